"""Nothing runs unrecorded: every path by which code executes outside a shell's own input.

Each test reproduces a path that ran code (SQL that commits included) with no
`statement` record, and shows that it is now recorded before it runs, or
refused. Shells run in a real pseudo-terminal; the database is the shop's SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

SHELLS = ["ipython", "ptpython", "python"]


def stock(shop: Path, product: int) -> int:
    with sqlite3.connect(shop / "var" / "shop.db") as conn:
        return int(conn.execute("select stock from products where id = ?", (product,)).fetchone()[0])


def statements(log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in audit_records(log) if r["event"] == "statement"]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


# -- completion never evaluates calls ---------------------------------------------


def test_ptpython_dictionary_completion_cannot_be_switched_on(shop: Path, log: Path) -> None:
    """The attack: dictionary completion on, then type (no Enter) an expression whose completion commits."""
    child = spawn_shell(shop, "--shell", "ptpython", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(
        "get_ptpython().enable_dictionary_completion = True; print('flag', get_ptpython().enable_dictionary_completion)"
    )
    child.expect("flag False")  # held off, whatever a statement (or the F2 menu) sets
    child.expect(r"\[dev\]")
    child.send('session[(sql("update products set stock=6262 where id=2"), commit())].')
    time.sleep(2)  # complete-while-typing runs here: with eval-based completion, the update would commit
    child.sendcontrol("c")  # discard the typed line
    child.expect(r"\[dev\]")
    child.send("\x1bOQ")  # F2: the options sidebar
    child.expect("Completion")
    time.sleep(0.5)
    screen = child.read_nonblocking(100_000, timeout=1) if child.isalive() else ""
    assert "Dictionary completion" not in child.before + screen
    child.send("\x1bOQ")  # close the sidebar
    child.sendline("print('menu', 'closed')")
    child.expect("menu closed")
    child.expect(r"\[dev\]")
    leave(child)
    assert stock(shop, 2) == 20  # as seeded
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # It never ran, so no statement nor SQL of it was recorded; the recorder has the keys typed (io records).
    assert not any("6262" in json.dumps(r) for r in records if r["event"] != "io")
    assert "6262" in "".join(r["data"] for r in records if r["event"] == "io" and r["stream"] == "i")


def test_ipython_completion_never_calls_even_when_configured_unsafe(shop: Path, log: Path, tmp_path: Path) -> None:
    ipython_dir = tmp_path / "ipython"
    (ipython_dir / "profile_default").mkdir(parents=True)
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(
        'c.Completer.evaluation = "unsafe"\nc.Completer.use_jedi = False\n'
    )
    child = spawn_shell(shop, "--shell", "ipython", "--audit-log", str(log), "-q", env={"IPYTHONDIR": str(ipython_dir)})
    child.expect(r"\[dev\]")
    child.sendline("print('policy', get_ipython().Completer.evaluation)")
    child.expect("policy limited")
    child.expect(r"\[dev\]")
    child.sendline("%config Completer.evaluation = 'unsafe'")
    child.expect("stays 'limited'")
    child.expect(r"\[dev\]")
    child.send('(sql("update products set stock=777 where id=3"), commit()).')
    child.send("\t")
    time.sleep(2)
    child.sendcontrol("c")  # clears the typed line (IPython redraws no new prompt for it)
    child.sendline("print('line', 'discarded')")
    child.expect("line discarded")
    child.expect(r"\[dev\]")
    leave(child)
    assert stock(shop, 3) == 30
    config = next(s for s in statements(log) if s["kind"] == "config")
    assert 'c.Completer.evaluation = "unsafe"' in config["source"] and len(config["files"][0]["sha256"]) == 64


# -- the user's own IPython profile ------------------------------------------------


def test_ipython_profile_code_is_recorded_before_it_runs(shop: Path, log: Path, tmp_path: Path) -> None:
    ipython_dir = tmp_path / "ipython"
    profile = ipython_dir / "profile_default"
    (profile / "startup").mkdir(parents=True)
    extensions = tmp_path / "ext"
    extensions.mkdir()
    (extensions / "stockext.py").write_text(
        textwrap.dedent("""
        def load_ipython_extension(ip):
            ip.user_ns["sql"]("update products set stock=404 where id=4")
            ip.user_ns["commit"]()
    """)
    )
    exec_file = tmp_path / "exec_file.py"
    exec_file.write_text('sql("update products set stock=505 where id=5"); commit()\n')
    (profile / "startup" / "00.py").write_text('sql("update products set stock=606 where id=6"); commit()\n')
    (profile / "ipython_config.py").write_text(
        textwrap.dedent(f"""
        c.InteractiveShellApp.exec_lines = ['sql("update products set stock=707 where id=7"); commit()']
        c.InteractiveShellApp.exec_files = [{str(exec_file)!r}]
        c.InteractiveShellApp.extensions = ["stockext"]
    """)
    )
    child = spawn_shell(
        shop,
        "--shell",
        "ipython",
        "--audit-log",
        str(log),
        "-q",
        env={"IPYTHONDIR": str(ipython_dir), "PYTHONPATH": str(extensions)},
    )
    child.expect(r"\[dev\]")
    leave(child)
    assert [stock(shop, p) for p in (4, 5, 6, 7)] == [404, 505, 606, 707]  # the profile's code ran, as IPython does
    recorded = statements(log)
    by_kind = {s["kind"]: s for s in recorded}
    assert "exec_lines" in by_kind["config"]["source"]
    assert (
        by_kind["extension"]["files"][0]["path"].endswith("stockext.py")
        and "stock=404" in by_kind["extension"]["source"]
    )
    startup = [s for s in recorded if s["kind"] == "startup"]
    assert {Path(s["files"][0]["path"]).name for s in startup} == {"00.py", "exec_file.py"}
    assert any(s["kind"] == "cell" and "stock=707" in s["source"] for s in recorded)
    results = {r["n"]: r for r in audit_records(log) if r["event"] == "result"}
    ran_as_statements = [s for s in recorded if s["kind"] in ("config", "startup", "cell", "extension")]
    assert all(
        results[s["n"]]["status"] == "ok" for s in ran_as_statements
    )  # each recorded before it ran, its outcome after
    assert any(s["kind"] == "import" and s["files"][0]["path"].endswith("stockext.py") for s in recorded)


# -- nested consoles ----------------------------------------------------------------

UPDATE = 'sql("update products set stock=111 where id=1")'
NESTED = {
    # what starts the nested console, what shows it is ready, its prompt, the lines typed inside it,
    # how it is left (prompts are spelt in two halves so that the echo of the statement cannot match)
    "interact": (
        "import code; type('C', (code.InteractiveConsole,), {'raw_input': lambda self, p='': input('NEST' + 'ED> ')})"
        "(globals()).interact(banner='', exitmsg='')",
        ["NESTED> "],
        "NESTED> ",
        [UPDATE, "commit()"],
        "\x04",
    ),
    # `; pass`: pdb then stops as the statement's frame returns (a bare expression would stop in displayhook)
    "pdb": ("breakpoint(); pass", [r"\(Pdb\) "], r"\(Pdb\) ", ["!" + UPDATE, "!commit()"], "c\n"),
    "exec_input": ("exec(input('NEST' + 'ED> '))", ["NESTED> "], "NESTED> ", [UPDATE + "; commit()"], ""),
    "ipython_embed": (
        "from IPython import embed; embed(banner1='EMB' + 'EDDED')",
        ["EMBEDDED", r"In \[\d+\]:"],
        r"In \[\d+\]:",
        [UPDATE, "commit()"],
        "exit\n",
    ),
}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("how", sorted(NESTED))
def test_nested_consoles_record_what_is_typed_in_them(shop: Path, log: Path, shell: str, how: str) -> None:
    start, ready, prompt, lines, leave_nested = NESTED[how]
    child = spawn_shell(shop, "--shell", shell, "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(start)
    for pattern in ready:
        child.expect(pattern)
    for i, line in enumerate(lines):
        if i:
            child.expect(prompt)
        child.sendline(line)
    if leave_nested:
        child.expect(prompt)
        child.send(leave_nested)
    child.expect(r"\[dev\]")
    child.sendline("print('back', 'outside')")
    child.expect("back outside")
    child.expect(r"\[dev\]")
    leave(child)
    assert stock(shop, 1) == 111  # the nested code ran ...
    recorded = statements(log)
    parent = next(s for s in recorded if s["source"].strip() == start)
    nested = [s for s in recorded if s.get("parent") == parent["n"]]
    sources = " ".join(s["source"] for s in nested)
    assert "stock=111" in sources and "commit()" in sources  # ... and was recorded, under the statement that opened it
    assert all(s["kind"] in ("nested", "input") for s in nested)


@pytest.mark.parametrize("mode", ["command", "script", "stdin"])
def test_exec_of_input_is_recorded_without_a_tty(shop: Path, log: Path, tmp_path: Path, mode: str) -> None:
    payload = 'sql("update products set stock=222 where id=2"); commit()\n'
    if mode == "command":
        result = run(["--audit-log", str(log), "-c", "exec(input())"], cwd=shop, input=payload)
    elif mode == "script":
        script = tmp_path / "reader.py"
        script.write_text("exec(input())\n")
        result = run(["--audit-log", str(log), str(script)], cwd=shop, input=payload)
    else:  # sys.stdin read directly, not through input()
        result = run(["--audit-log", str(log), "-c", "import sys; exec(sys.stdin.readline())"], cwd=shop, input=payload)
    assert result.exit_code == 0, result.stderr
    assert stock(shop, 2) == 222
    nested = [s for s in statements(log) if s.get("parent") == 1]
    assert nested and "stock=222" in nested[0]["source"] and nested[0]["kind"] == "nested"


# -- IPython: automagic run, run_cell inside a cell ------------------------------------


def test_ipython_run_magic_records_the_file(shop: Path, log: Path, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("print('job ran', count(Customer))\n")
    child = spawn_shell(shop, "--shell", "ipython", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(f"%run -i {script}")  # -i: in the shell's namespace
    child.expect("job ran 20")
    child.expect(r"\[dev\]")
    child.sendline(f"run -i {script}")  # automagic: no %
    child.expect("job ran 20")
    child.expect(r"\[dev\]")
    leave(child)
    recorded = statements(log)
    cells = [s for s in recorded if s["kind"] == "cell"]
    assert [c["source"] for c in cells] == [f"%run -i {script}", f"run -i {script}"]
    for cell in cells:
        file = next(s for s in recorded if s.get("parent") == cell["n"])
        assert file["kind"] == "file" and file["files"][0]["path"] == str(script)
        assert file["files"][0]["text"] == script.read_text() and len(file["files"][0]["sha256"]) == 64


def test_ipython_run_cell_inside_a_cell_keeps_both_outcomes(shop: Path, log: Path) -> None:
    child = spawn_shell(shop, "--shell", "ipython", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline("get_ipython().run_cell('inner = count(Product)'); print('outer', inner)")
    child.expect("outer 8")
    child.expect(r"\[dev\]")
    leave(child)
    records = audit_records(log)
    outer = next(r for r in records if r["event"] == "statement" and r["source"].startswith("get_ipython()"))
    inner = next(r for r in records if r["event"] == "statement" and r["source"] == "inner = count(Product)")
    assert inner["parent"] == outer["n"]
    results = {r["n"]: r["status"] for r in records if r["event"] == "result"}
    assert results == {outer["n"]: "ok", inner["n"]: "ok"}


# -- after the end: threads and forks -------------------------------------------------


@pytest.mark.subprocess  # a thread left running: only the console script's os._exit ends it
def test_a_thread_left_running_does_nothing_after_the_end(shop: Path, log: Path, tmp_path: Path) -> None:
    """The process ends with the audit session: a thread the statement started does not outlive it."""
    marker = tmp_path / "thread.txt"
    program = textwrap.dedent(f"""
        import threading, time
        def late():
            time.sleep(1.0)
            open({str(marker)!r}, "w").write("ran")
            sql("update products set stock=333 where id=3"); commit()
        threading.Thread(target=late).start()
    """)
    result = run(["--audit-log", str(log), "-c", program], cwd=shop)
    assert result.exit_code == 0, result.stderr
    time.sleep(1.5)
    assert stock(shop, 3) == 30 and not marker.exists()
    assert audit_records(log)[-1]["event"] == "session_end"


@pytest.mark.subprocess  # os.fork: a child of pytest would run pytest's teardown
def test_a_forked_child_writes_nothing_under_the_parent_session(shop: Path, log: Path) -> None:
    program = textwrap.dedent("""
        import os
        pid = os.fork()
        if pid == 0:
            try:
                sql("update products set stock=444 where id=4")
                print("child wrote")
            except Exception as exc:
                print("child refused:", type(exc).__name__)
        else:
            os.waitpid(pid, 0)
            print("parent done")
    """)
    result = run(["--audit-log", str(log), "-c", program], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert "child refused: SessionEnded" in result.stdout and "parent done" in result.stdout
    assert stock(shop, 4) == 40
    events = [r["event"] for r in audit_records(log)]
    assert events == ["session_start", "statement", "result", "session_end"]  # nothing duplicated
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


@pytest.mark.subprocess  # os.fork: a child of pytest would run pytest's teardown
def test_a_forked_child_cannot_start_statements(shop: Path, log: Path) -> None:
    """A child that goes on to run code the parent's session would never see leaves at once (exit 3)."""
    program = textwrap.dedent("""
        import os
        pid = os.fork()
        if pid == 0:
            exec("print('child ran unrecorded code')")
        else:
            _, status = os.waitpid(pid, 0)
            print("child exit", os.waitstatus_to_exitcode(status))
    """)
    result = run(["--audit-log", str(log), "-c", program], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert "child exit 3" in result.stdout and "child ran unrecorded code" not in result.stdout
    assert "forked child process cannot run more audited statements" in result.stderr
    assert [r["event"] for r in audit_records(log)] == ["session_start", "statement", "result", "session_end"]


def test_pty_session_still_ends_cleanly_with_a_nested_console(shop: Path, log: Path) -> None:
    """Leaving a nested console with Ctrl-D returns to appshell's prompt; the session ends ok."""
    child = spawn_shell(shop, "--shell", "python", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline("import code; code.interact(local=globals(), banner='NESTED' + '-CONSOLE', exitmsg='')")
    child.expect("NESTED-CONSOLE")
    child.expect(">>> ")
    child.sendcontrol("d")
    child.expect(r"\[dev\]")
    leave(child)
    assert audit_records(log)[-1]["status"] == "ok"


# -- refusals inside a statement: one line in every shell ------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_a_sandbox_refusal_is_one_line_in_every_shell(shop: Path, log: Path, shell: str) -> None:
    child = spawn_shell(shop, "--shell", shell, "--sandbox", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline('sql("COMMIT")')
    child.expect("SandboxRefused: ")
    child.expect(r"\[dev\]")
    assert "Traceback" not in child.before
    child.sendline("print('still', 'here')")
    child.expect("still here")
    child.expect(r"\[dev\]")
    leave(child)
    result = next(r for r in audit_records(log) if r["event"] == "result")
    assert result["status"] == "error" and result["error"].startswith("SandboxRefused")


def test_every_path_in_the_docs_table_names_a_test_that_exists() -> None:
    """docs/audit.md, "What is recorded, and how each path is closed": each row is backed by a real test."""
    import ast
    import re

    root = Path(__file__).resolve().parent
    doc = (root.parent / "docs" / "audit.md").read_text()
    section = doc.split("## What is recorded, and how each path is closed", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| path")]
    assert len(rows) >= 10
    for row in rows:
        cited = re.findall(r"`(test_\w+\.py)?::(\w+)`", row)
        assert cited, f"no test named in: {row}"
        module = ""
        for file, name in cited:
            module = file or module  # `::name` after a first `file::name` means the same file
            tree = ast.parse((root / module).read_text())
            names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            assert name in names, f"{module}::{name} (cited in docs/audit.md) does not exist"


# -- found by a hostile review: after the end, deep stacks, between statements, class-level holds --------


@pytest.mark.subprocess  # atexit and finalizers run before the end only in the console script (session.STANDALONE)
@pytest.mark.parametrize("flag", ["--sandbox", "--read-only"])
def test_no_code_of_the_operator_runs_after_the_session_ends(shop: Path, log: Path, tmp_path: Path, flag: str) -> None:
    """atexit handlers and finalizers run before the session ends, under its guards and recorded;
    a timer that would fire later never does: the process ends with the session."""
    marker = tmp_path / "timer-ran"
    program = textwrap.dedent(f"""
        import atexit, threading, weakref
        from shop.db import engine
        def late(value):
            try:
                sql(f"update products set stock={{value}} where id=2"); commit()
            except Exception as exc:
                print("refused:", type(exc).__name__)
        def raw_later():
            open({str(marker)!r}, "w").write("ran")
            raw = engine.raw_connection()
            raw.cursor().execute("update products set stock=7039 where id=2")
            raw.commit()
        atexit.register(late, 7037)
        class Held: pass
        held = Held()
        weakref.finalize(held, late, 7038)
        threading.Timer(3, raw_later).start()
    """)
    result = run([flag, "--audit-log", str(log), "-c", program], cwd=shop)
    assert result.exit_code == 0, result.stderr
    time.sleep(3.5)
    assert stock(shop, 2) == 20 and not marker.exists()
    records = audit_records(log)
    assert records[-1]["event"] == "session_end"
    ran = [r for r in records if r["event"] == "statement" and r["kind"] == "sql" and "stock=7037" in r["source"]]
    if flag == "--sandbox":  # it ran inside the sandbox, recorded before it ran, and was rolled back
        assert ran and records.index(ran[0]) < len(records) - 1
    else:  # the database refused it; appshell said so
        assert "refused:" in result.stdout


def test_nested_code_near_the_recursion_limit_is_recorded_or_not_run(shop: Path, log: Path, tmp_path: Path) -> None:
    """Recording at the edge of the stack must not fail open (nor drop the sink)."""
    marker = tmp_path / "deep-ran"
    script = tmp_path / "deep.py"
    script.write_text(
        textwrap.dedent(f"""
        def dive(n):
            if n == 0:
                exec("open({str(marker)!r}, 'a').write('x')")
                return
            dive(n - 1)
        for depth in range(900, 1000, 3):
            try:
                dive(depth)
            except BaseException:
                pass
    """)
    )
    result = run(["--audit-log", str(log), str(script)], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert "failed" not in result.stderr  # no sink dropped
    ran = len(marker.read_text()) if marker.exists() else 0
    recorded = [s for s in statements(log) if s["kind"] == "nested" and str(marker) in s["source"]]
    assert ran > 0 and len(recorded) >= ran


def test_code_a_thread_runs_between_statements_is_recorded(shop: Path, log: Path, tmp_path: Path) -> None:
    command = tmp_path / "command.py"
    child = spawn_shell(shop, "--shell", "python", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(
        "import threading, time, os; threading.Thread(target=lambda: "
        "[time.sleep(0.2) for _ in iter(lambda: os.path.exists("
        f"{str(command)!r}), True)] + [exec(open({str(command)!r}).read())], daemon=True).start()"
    )
    child.expect(r"\[dev\]")
    command.write_text(
        'sql("update products set stock=7012 where id=2"); commit()\n'
    )  # while appshell waits at the prompt
    for _ in range(50):
        if stock(shop, 2) == 7012:
            break
        time.sleep(0.2)
    leave(child)
    recorded = statements(log)
    background = [s for s in recorded if s["kind"] == "background"]
    assert background and "stock=7012" in background[0]["source"]
    sql = [s for s in recorded if s["kind"] == "sql"]
    assert any("UPDATE PRODUCTS" in s["source"].upper() for s in sql)  # and its SQL, before it ran


def test_ptpython_completion_stays_safe_when_the_repl_class_is_swapped_back(shop: Path, log: Path) -> None:
    child = spawn_shell(shop, "--shell", "ptpython", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(
        "r = get_ptpython(); r.__class__ = type(r).__mro__[1]; "
        "r.enable_dictionary_completion = True; print('swapped', 'back')"
    )
    child.expect("swapped back")  # the statement's output: the next prompt is a fresh one, not the redraw of this line
    child.expect(r"\[dev\]")
    child.send('session[(sql("update products set stock=7030 where id=2"), commit())].')
    time.sleep(2)
    child.sendcontrol("c")
    child.expect(r"\[dev\]")
    leave(child)
    assert stock(shop, 2) == 20


def test_ipython_completion_stays_safe_with_a_new_completer(shop: Path, log: Path) -> None:
    child = spawn_shell(shop, "--shell", "ipython", "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    for line in (
        '%config Completer.evaluation = "unsafe"',
        "%config Completer.use_jedi = False",
        "get_ipython().init_completer()",
    ):
        child.sendline(line)
        child.expect(r"\[dev\]")
    child.send('(sql("update products set stock=7031 where id=2"), commit()).')
    child.send("\t")
    time.sleep(2)
    child.sendcontrol("c")
    child.expect(r"\[dev\]")
    leave(child)
    assert stock(shop, 2) == 20


def test_ipython_json_config_and_stored_pickles_are_recorded(shop: Path, log: Path, tmp_path: Path) -> None:
    import pickle

    ipython_dir = tmp_path / "ipython"
    profile = ipython_dir / "profile_default"
    (profile / "db" / "autorestore").mkdir(parents=True)
    (profile / "ipython_config.json").write_text('{"StoreMagics": {"autorestore": true}}')

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (exec, ('sql("update products set stock=8014 where id=2"); commit()',))

    (profile / "db" / "autorestore" / "x").write_bytes(pickle.dumps(Payload()))
    child = spawn_shell(shop, "--shell", "ipython", "--audit-log", str(log), "-q", env={"IPYTHONDIR": str(ipython_dir)})
    child.expect(r"\[dev\]")
    leave(child)
    recorded = statements(log)
    config = next(s for s in recorded if s["kind"] == "config")
    assert '"autorestore": true' in config["source"] and config["files"][0]["path"].endswith("ipython_config.json")
    pickled = next(s for s in recorded if s["kind"] == "pickle")
    assert pickled["files"][0]["path"].endswith("autorestore/x") and len(pickled["files"][0]["sha256"]) == 64
    assert "stock=8014" in pickled["files"][0]["text"]  # what the pickle calls, readable in the record


def test_an_operator_module_imported_from_byte_code_without_source_is_recorded_and_refused(
    shop: Path, log: Path, tmp_path: Path
) -> None:
    """A sourceless .pyc runs no compile() in the session at all: its import is recorded, and refused —
    the record could not say what it runs (tests/test_imports_recorded.py has the doctored .pyc of issue 22)."""
    import py_compile

    mods = tmp_path / "mods"
    mods.mkdir()
    source = mods / "quietmod.py"
    source.write_text(
        "from shop.db import engine\nwith engine.begin() as c:\n"
        '    c.exec_driver_sql("update products set stock=8017 where id=2")\n'
    )
    py_compile.compile(str(source), cfile=str(mods / "quietmod.pyc"))
    source.unlink()
    result = run(
        ["--audit-log", str(log), "-c", f"import sys; sys.path.insert(0, {str(mods)!r}); import quietmod"], cwd=shop
    )
    assert result.exit_code == 1
    assert "byte code with no source" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert stock(shop, 2) != 8017
    recorded = statements(log)
    command = next(s for s in recorded if s["kind"] == "command")
    imported = next(s for s in recorded if s["kind"] == "import")
    assert imported["files"][0]["path"] == str(mods / "quietmod.pyc") and imported["parent"] == command["n"]
    assert imported["files"][0]["matches_source"] is None and "no source" in imported["files"][0]["refused"]


def test_a_file_the_program_left_open_is_flushed_before_the_process_ends(shop: Path, tmp_path: Path) -> None:
    """appshell leaves with os._exit after the session: what Python's exit would flush is flushed first."""
    out = tmp_path / "report.csv"
    result = run(["-c", f"report = open({str(out)!r}, 'w')\nreport.write('id,stock\\n1,10\\n')"], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert out.read_text() == "id,stock\n1,10\n"
