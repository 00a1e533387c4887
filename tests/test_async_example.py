"""The async example app (examples/fastapi, issue 12) on aiosqlite and on PostgreSQL through asyncpg:
every shell through a real pty, every mode, safety and audit on its AsyncSession, and the
"Async apps" examples of docs/usage.md.

In-process (tests/support/harness.py): run() and the seeds run in this process; the shells (a real
pty) and the web process stay real processes."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url
from support.audit import audit_records
from support.databases import asyncpg_database
from support.docs import console_blocks
from support.environment import clean_environ
from support.harness import run, run_module
from support.paths import ROOT
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

EXAMPLE = ROOT / "examples" / "fastapi"
IGNORE = shutil.ignore_patterns("*.db", "__pycache__", ".env", ".appshell")
SHELLS = ["ipython", "ptpython", "python"]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")
HINT = (
    "appshell: hint: write `await …` instead of asyncio.run(…): it "
    "ran on the session's event loop, where the app's connections live"
)

# The seed (app/seed.py): users 1–5 (Ada, Brian, Chen, Dana, Emil), user i with i notes, numbered
# 1–15 in that order; each user's third note is done, so 15 notes of which 12 are open.


@pytest.fixture(scope="session")
def _seeded_notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example seeded once per test run on its default database (notes.db, aiosqlite): tests copy it."""
    template = tmp_path_factory.mktemp("template") / "fastapi"
    shutil.copytree(EXAMPLE, template, ignore=IGNORE)
    run_module("app.seed", template, process=False)
    return template


@pytest.fixture(scope="session")
def _seeded_pg(_seeded_notes: Path) -> Iterator[str]:
    """A PostgreSQL database seeded once per test run through asyncpg, its name; each test gets a
    copy (CREATE DATABASE … TEMPLATE)."""
    with asyncpg_database() as url:
        run_module("app.seed", _seeded_notes, {"DATABASE_URL": url}, process=False)
        yield str(make_url(url).database)


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def notes(request: pytest.FixtureRequest, tmp_path: Path, _seeded_notes: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A seeded copy of the example, with the environment that points it at its database: its own
    default (sqlite+aiosqlite, notes.db in the copy), or a copy of the seeded PostgreSQL database."""
    root = tmp_path / "fastapi"
    shutil.copytree(_seeded_notes, root, ignore=shutil.ignore_patterns("__pycache__", ".appshell"))
    if request.param == "aiosqlite":
        yield root, {}
        return
    with asyncpg_database(template=request.getfixturevalue("_seeded_pg")) as url:
        yield root, {"DATABASE_URL": url}


def test_the_example_seeds_once_and_says_so(notes: tuple[Path, dict[str, str]]) -> None:
    root, env = notes
    # A real process: what the seed prints is the point, and run_module() keeps no output
    # (when APPSHELL_TEST_SUBPROCESS=1 sends it to a process too).
    again = subprocess.run(
        [sys.executable, "-m", "app.seed"], cwd=root, env=clean_environ(env), capture_output=True, text=True, check=True
    )
    assert again.stdout == "the notes database is already seeded\n"
    assert json.loads(run(["--json", "-c", "count(Note)"], cwd=root, env=env).stdout) == 15  # and it changed nothing


# -- the shells, through a real pty -------------------------------------------------------------

# (what is typed, a pattern of what it prints): one statement a line, as an operator types them.
AT_THE_PROMPT = [
    ("import asyncio; from app import crud; from app.db.session import engine as app_engine", None),
    # `session` is an AsyncSession of the app's own async_sessionmaker (its expire_on_commit=False)
    (
        "print('kind', type(session).__name__, session.bind is app_engine, session.sync_session.expire_on_commit)",
        r"kind AsyncSession True False",
    ),
    ("user = await crud.get_user(session, 1)", None),
    (
        "print('user', user.email, [n.title for n in user.notes])",
        r"user ada@example\.com \[\"Ada's note 1\"\]",
    ),  # a lazy load, no await
    (
        "print('helpers', count(User), count(Note, done=False), "
        "find(User, 2).name, first(Note, owner_id=3).id, len(where(Note, done=True)))",
        r"helpers 5 12 Brian 4 3",
    ),
    ("show(where(User, name='Chen'))", r"│ +3 │ chen@example\.com +│ Chen"),
    ("describe(Note)", r"│ owner_id +│ INTEGER"),
    ("print('plan', explain(select(Note).where(Note.done == True)))", r"plan .*notes"),
    ("print(sql('select count(*) as n from notes'))", r"│ +15 │"),
    # an awaited commit of the app's and helpers in one statement
    (
        "note = await crud.create_note(session, user.id, 'typed'); "
        "print('mixed', note.id, count(Note), first(Note, title='typed').owner.name)",
        r"mixed 16 16 Ada",
    ),
    ("find(User, 2).name = 'Bri'; rollback(); print('rolled back', find(User, 2).name)", r"rolled back Brian"),
    (
        "find(User, 2).name = 'Brian B.'; commit(); "
        "print('committed', await session.scalar(select(User.name).where(User.id == 2)))",
        r"committed Brian B\.",
    ),
    # the trap: asyncio.run() at a prompt runs on the session's loop (the app's pool stays usable), with a hint
    (
        "print('ran', asyncio.run(crud.get_user(session, 4)).name, count(User))",
        r"appshell: hint: write `await …` instead of asyncio\.run\(…\).*ran Dana 5",
    ),
]


# spawn_shell is always the real console script in a real pty (IPython and ptpython are never
# started in the test process); only the check afterwards runs in-process.
@pytest.mark.parametrize("shell", SHELLS)
def test_every_shell_awaits_the_apps_functions_and_runs_the_helpers_without_await(
    notes: tuple[Path, dict[str, str]], tmp_path: Path, shell: str
) -> None:
    root, env = notes
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(root, "--shell", shell, "--audit-log", str(log), "-q", env=env)
    # No 50 ms pause before each line (pexpect's default, for programs that drop early typing):
    # every line is sent after its prompt is shown, as an operator types it.
    child.delaybeforesend = None
    child.expect(r"\[dev\]")
    for typed, shown in AT_THE_PROMPT:
        child.sendline(typed)
        if shown:
            child.expect(shown)
        child.expect(r"\[dev\]")
    leave(child)
    # The rows committed at the prompt are in the database for the next process to see.
    after = run(["--json", "-c", "[count(Note), find(User, 2).name]"], cwd=root, env=env)
    assert json.loads(after.stdout) == [16, "Brian B."], after.output

    records = audit_records(log)
    sources = {r["n"]: r["source"] for r in records if r["event"] == "statement" and "parent" not in r}
    results = {r["n"]: r for r in records if r["event"] == "result" and r["n"] in sources}
    assert [sources[n] for n in sorted(sources)] == [typed for typed, _ in AT_THE_PROMPT]
    assert all(r["status"] == "ok" for r in results.values()), results
    by_source = {sources[n]: results[n]["sql"] for n in sources}
    assert any(
        re.search(r"FROM users\s+WHERE users\.id = ", s) for s in by_source[AT_THE_PROMPT[2][0]]
    )  # the awaited get_user
    assert any(s.startswith("SELECT count(*)") for s in by_source[AT_THE_PROMPT[4][0]])  # a helper's
    assert any(s.startswith("INSERT INTO notes") for s in by_source[AT_THE_PROMPT[9][0]])  # the awaited create_note
    assert any(s.startswith("UPDATE users SET name") for s in by_source[AT_THE_PROMPT[11][0]])  # commit()


# -- the modes: -c, a script, stdin, --json -------------------------------------------------------

PROGRAM = """\
from app import crud
from app.db.session import engine as app_engine
print(type(session).__name__, session.bind is app_engine)
user = await crud.get_user(session, 1)
print(user.email, [n.title for n in user.notes])
print(count(User), count(Note, done=False), find(User, 2).name, first(Note, owner_id=3).id, len(where(Note, done=True)))
show(where(User, name='Chen'))
describe(Note)
print('plan', explain(select(Note).where(Note.done == True)))
print(sql('select count(*) as n from notes'))
note = await crud.create_note(session, user.id, 'from a program'); \
print('mixed', note.id, count(Note), first(Note, title='from a program').owner.name)
find(User, 2).name = 'Bri'; rollback(); print('rolled back', find(User, 2).name)
find(User, 2).name = 'Brian B.'; commit(); \
print('committed', await session.scalar(select(User.name).where(User.id == 2)))
"""

PRINTED = [
    r"AsyncSession True",
    r"ada@example\.com \[\"Ada's note 1\"\]",
    r"5 12 Brian 4 3",
    r"│ +3 │ chen@example\.com +│ Chen",
    r"│ owner_id +│ INTEGER",
    r"plan .*notes",
    r"│ +15 │",
    r"mixed 16 16 Ada",
    r"rolled back Brian",
    r"committed Brian B\.",
]


@pytest.mark.parametrize("mode", ["command", "script", "stdin"])
def test_every_mode_awaits_the_apps_functions_and_runs_the_helpers_without_await(
    notes: tuple[Path, dict[str, str]], tmp_path: Path, mode: str
) -> None:
    root, env = notes
    log = tmp_path / "audit.jsonl"
    if mode == "command":
        result = run(["--audit-log", str(log), "-c", PROGRAM], cwd=root, env=env)
    elif mode == "script":
        script = tmp_path / "job.py"
        script.write_text(PROGRAM)
        result = run(["--audit-log", str(log), str(script)], cwd=root, env=env)
    else:
        result = run(["--audit-log", str(log)], cwd=root, env=env, input=PROGRAM)
    assert result.exit_code == 0, result.output
    position = 0
    for pattern in PRINTED:  # in order
        found = re.compile(pattern).search(result.stdout, position)
        assert found, (pattern, result.stdout[position:])
        position = found.end()
    assert json.loads(run(["--json", "-c", "count(Note)"], cwd=root, env=env).stdout) == 16
    program = [r for r in audit_records(log) if r["event"] == "result" and r["n"] == 1]
    assert program[0]["status"] == "ok"
    assert any(s.startswith("INSERT INTO notes") for s in program[0]["sql"]), program[0]["sql"]


def test_json_of_an_awaited_value(notes: tuple[Path, dict[str, str]]) -> None:
    root, env = notes
    result = run(["--json", "-c", "from app import crud\nawait crud.open_counts(session)"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "ada@example.com": 1,
        "brian@example.com": 2,
        "chen@example.com": 2,
        "dana@example.com": 3,
        "emil@example.com": 4,
    }
    user = run(["--json", "-c", "from app import crud\n(await crud.get_user(session, 5)).email"], cwd=root, env=env)
    assert (user.exit_code, user.stdout) == (0, '"emil@example.com"\n'), user.output


def test_asyncio_run_in_a_script_runs_on_the_sessions_loop_with_a_hint(
    notes: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = notes
    script = tmp_path / "report.py"
    script.write_text(
        "import asyncio\n"
        "from app import crud\n"
        "from app.db.session import SessionLocal\n"
        "shell_loop = await asyncio.sleep(0, result=asyncio.get_running_loop())\n"
        "async def main():\n"
        "    async with SessionLocal() as db:\n"
        "        return asyncio.get_running_loop() is shell_loop, await crud.open_counts(db)\n"
        "same, counts = asyncio.run(main())\n"
        "print(same, counts['emil@example.com'])\n"
        "print(asyncio.run(main())[1]['ada@example.com'], count(Note))\n"  # the app's pool is still usable
    )
    result = run([str(script)], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["True 4", "1 15"], result.output
    assert [line for line in result.stderr.splitlines() if "asyncio.run" in line] == [HINT], result.output


# -- safety and audit ------------------------------------------------------------------------------


def test_the_sandbox_rolls_back_an_awaited_commit_and_sums_it_up(notes: tuple[Path, dict[str, str]]) -> None:
    root, env = notes
    code = (
        "from app import crud\nn = await crud.create_note(session, 1, 'dry')\nawait crud.mark_done(session, 1)\n"
        "print(n.id, count(Note), count(Note, done=True))"
    )
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "16 16 4\n", result.output
    assert "appshell: sandbox dry run — these changes were made, then rolled back:" in result.stderr, result.output
    assert re.search(r"│ notes │ +1 │ +1 │ +0 │", result.stderr), result.output
    assert not re.search(r"│ users │", result.stderr), result.output
    after = run(["--json", "-c", "[count(Note), count(Note, done=True), find(Note, 1).done]"], cwd=root, env=env)
    assert json.loads(after.stdout) == [15, 3, False], after.output


def test_read_only_refuses_an_awaited_write_in_one_line(notes: tuple[Path, dict[str, str]]) -> None:
    root, env = notes
    result = run(
        ["--read-only", "-c", "from app import crud\nawait crud.create_note(session, 1, 'nope')"], cwd=root, env=env
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("ReadOnlyError: this session is read-only"), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.output
    assert json.loads(run(["--json", "-c", "count(Note)"], cwd=root, env=env).stdout) == 15


# -- the web process: the same settings, session factory and crud -------------------------------------

WEB = """\
from fastapi.testclient import TestClient
from app.main import app
with TestClient(app) as client:
    print(client.get("/users/2").json()["name"], \
[n["title"] for n in client.get("/users/5/notes", params={"done": True}).json()])
    print(client.post("/users/9/notes", json={"title": "x"}).status_code)
"""


def test_the_web_process_sees_what_the_shell_committed(notes: tuple[Path, dict[str, str]]) -> None:
    root, env = notes
    changed = run(
        ["-c", "from app import crud\nawait crud.mark_done(session, 15)\nfind(User, 2).name = 'Brian B.'\ncommit()"],
        cwd=root,
        env=env,
    )
    assert changed.exit_code == 0, changed.output
    # A real process: the web app as it is deployed, apart from the shell that changed the data.
    web = subprocess.run(
        [sys.executable, "-c", WEB], cwd=root, env=clean_environ(env), capture_output=True, text=True, timeout=120
    )
    assert web.returncode == 0, web.stderr
    assert web.stdout.splitlines() == ['Brian B. ["Emil\'s note 3", "Emil\'s note 5"]', "404"]


# -- docs/usage.md, "Async apps": every ```console fastapi example, run in a copy of the example ----


def doc_blocks() -> list[list[tuple[str, str, int]]]:
    """Each ```console fastapi block of docs/usage.md: (command, what it prints, exit code), in order."""
    return console_blocks((ROOT / "docs" / "usage.md").read_text(encoding="utf-8"), "fastapi")


def test_the_docs_have_async_examples() -> None:
    assert len(doc_blocks()) >= 4


@pytest.mark.parametrize("block", doc_blocks(), ids=lambda b: b[0][0][:50])
def test_doc_block(block: list[tuple[str, str, int]], tmp_path: Path, _seeded_notes: Path) -> None:
    root = tmp_path / "fastapi"
    shutil.copytree(_seeded_notes, root, ignore=shutil.ignore_patterns("__pycache__", ".appshell"))
    for command, expected, code in block:
        words = shlex.split(command)
        stdin = ""
        if "|" in words:  # echo "PROGRAM" | appshell ARGS
            bar = words.index("|")
            assert words[0] == "echo", command
            stdin, words = " ".join(words[1:bar]) + "\n", words[bar + 1 :]
        assert words[0] == "appshell", command
        result = run(words[1:], cwd=root, input=stdin)
        assert result.exit_code == code, result.output
        assert TIMESTAMP.sub("YYYY-MM-DD hh:mm:ss", result.output) == expected, command
