"""Imports record what runs (issue 22 item 9, attack 4).

The import system picks a module's ``.pyc`` by its source's size and mtime
alone (``SourceFileLoader.get_code``): byte code compiled from evil source,
then covered by a benign ``.py`` of the same size and mtime, runs while the
source reads benign. An operator module imported in a session is recorded with
the sha256 of the code object that runs beside its source's, and refused where
that code is not what its source compiles to, or has no source.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import py_compile
import sqlite3
from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run

pytestmark = pytest.mark.in_process

EVIL = (
    'print("evil ran")\nfrom shop.db import engine\nwith engine.begin() as c:\n'
    '    c.exec_driver_sql("update products set stock=4242 where id=2")\n'
)
BENIGN = 'def fix():\n    """Nothing to see."""\n    return None\n'


def stock(shop: Path, product: int) -> int:
    with sqlite3.connect(shop / "var" / "shop.db") as conn:
        return int(conn.execute("select stock from products where id = ?", (product,)).fetchone()[0])


def imports(log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in audit_records(log) if r["event"] == "statement" and r["kind"] == "import"]


def doctored(folder: Path, name: str, dfile: str | None = None) -> Path:
    """Attack 4: *name*.py compiled from EVIL, then replaced by benign text of the same size and mtime."""
    folder.mkdir(exist_ok=True)
    source = folder / f"{name}.py"
    source.write_text(EVIL)
    st = source.stat()
    pyc = py_compile.compile(str(source), dfile=dfile)
    source.write_text(BENIGN + "#" * (len(EVIL) - len(BENIGN) - 1) + "\n")
    assert source.stat().st_size == st.st_size
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    return Path(pyc)


def importing(folder: Path, name: str) -> str:
    return f"import sys; sys.path.insert(0, {str(folder)!r}); import {name}"


def test_byte_code_that_is_not_its_source_is_refused_and_recorded(shop: Path, tmp_path: Path) -> None:
    mods, log = tmp_path / "mods", tmp_path / "audit.jsonl"
    pyc = doctored(mods, "helpers_fix")
    result = run(["--audit-log", str(log), "-c", importing(mods, "helpers_fix")], cwd=shop)
    assert result.exit_code == 1
    assert "evil ran" not in result.stdout and stock(shop, 2) != 4242  # the evil byte code did not run
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(pyc) in lines[0] and "delete" in lines[0], result.stderr
    [record] = imports(log)
    entry = record["files"][0]
    assert entry["path"] == str((mods / "helpers_fix.py").resolve()) and entry["matches_source"] is False
    assert entry["sha256"] == hashlib.sha256((mods / "helpers_fix.py").read_bytes()).hexdigest()
    assert entry["bytecode"] == {"path": str(pyc), "sha256": hashlib.sha256(pyc.read_bytes()).hexdigest()}
    evil_code = compile(EVIL, str(mods / "helpers_fix.py"), "exec", dont_inherit=True)
    assert entry["code_sha256"] == hashlib.sha256(marshal.dumps(evil_code, 2)).hexdigest()  # what would have run
    assert "does not match its source" in entry["refused"]
    # The fix the line names: delete the byte code; the source then runs, and is what is recorded.
    pyc.unlink()
    again = run(
        ["--audit-log", str(log), "-c", importing(mods, "helpers_fix") + "; print(helpers_fix.fix())"], cwd=shop
    )
    assert again.exit_code == 0, again.output
    assert imports(log)[-1]["files"][0]["matches_source"] is True


def test_byte_code_that_names_a_standard_library_file_is_still_checked(shop: Path, tmp_path: Path) -> None:
    """The code's own file name (co_filename) is the attacker's
    to choose: the module's file decides it is the operator's."""
    mods, log = tmp_path / "mods", tmp_path / "audit.jsonl"
    doctored(mods, "helpers_os", dfile=os.__file__)
    result = run(["--audit-log", str(log), "-c", importing(mods, "helpers_os")], cwd=shop)
    assert result.exit_code == 1 and "evil ran" not in result.stdout
    assert imports(log)[0]["files"][0]["matches_source"] is False


def test_byte_code_made_from_its_source_runs_and_records_the_code_it_ran(shop: Path, tmp_path: Path) -> None:
    mods, log = tmp_path / "mods", tmp_path / "audit.jsonl"
    mods.mkdir()
    source = mods / "helpers_ok.py"
    source.write_text("ANSWER = 42\n")
    pyc = Path(py_compile.compile(str(source)))
    result = run(
        ["--audit-log", str(log), "-c", importing(mods, "helpers_ok") + "; print(helpers_ok.ANSWER)"], cwd=shop
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "42"
    entry = imports(log)[0]["files"][0]
    assert entry["matches_source"] is True
    assert (
        entry["code_sha256"]
        == hashlib.sha256(
            marshal.dumps(compile("ANSWER = 42\n", str(source), "exec", dont_inherit=True), 2)
        ).hexdigest()
    )
    assert entry["bytecode"]["sha256"] == hashlib.sha256(pyc.read_bytes()).hexdigest()


def test_library_imports_are_not_checked(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    result = run(["--audit-log", str(log), "-c", "import colorsys, wave"], cwd=shop)
    assert result.exit_code == 0, result.output
    assert imports(log) == []


def test_a_module_from_a_zip_archive_is_compared_with_the_source_in_it(shop: Path, tmp_path: Path) -> None:
    import zipfile

    log, archive = tmp_path / "audit.jsonl", tmp_path / "ops.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("helpers_zip.py", "ANSWER = 7\n")
    result = run(
        ["--audit-log", str(log), "-c", importing(archive, "helpers_zip") + "; print(helpers_zip.ANSWER)"], cwd=shop
    )
    assert result.exit_code == 0, result.output
    entry = imports(log)[0]["files"][0]
    assert entry["matches_source"] is True and entry["path"].endswith("ops.zip/helpers_zip.py")
    assert imports(log)[0]["source"] == "ANSWER = 7\n"


def test_the_private_import_frame_appshell_reads_is_still_there() -> None:
    """Private API pinned (CPython 3.8–3.13): the import system runs a module's code as
    ``_call_with_frames_removed(exec, code, module.__dict__)``; appshell.record.nested reads that frame's
    ``args`` to learn the module's own file, whatever the code's co_filename claims."""
    import importlib._bootstrap as bootstrap
    import importlib._bootstrap_external as external  # frozen: no source to read, its code's names are enough
    import inspect

    assert list(inspect.signature(bootstrap._call_with_frames_removed).parameters) == ["f", "args", "kwds"]
    assert {"_call_with_frames_removed", "exec", "__dict__"} <= set(
        external._LoaderBasics.exec_module.__code__.co_names
    )
    # (test_byte_code_that_names_a_standard_library_file_is_still_checked fails too if the frame moves.)
