"""Shared fixtures: a clean environment, real subprocesses, real SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "apps"
SHOP = ROOT / "examples" / "shop"
APPSHELL = str(Path(sys.executable).with_name("appshell"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The servers the tests use, read once here: every test's environment is cleaned of APPSHELL_* (_clean_env).
PG_URL = os.environ.get("APPSHELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("APPSHELL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

# Started as a background job of a shell without job control (`./scripts/test &`, some CI runners),
# this process ignores SIGINT, and so would every process it starts — an ignored signal stays
# ignored across exec, and Python then installs no KeyboardInterrupt handler. The tests that press
# Ctrl-C need their shells as an operator's terminal starts them: with SIGINT's default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any appshell setting or database URL."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("APPSHELL_") or k in ("DATABASE_URL", "SOURCE_VERSION", "PYTHONSTARTUP"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # pexpect does not answer a terminal's cursor position request (CPR): prompt_toolkit (IPython,
    # ptpython) would wait up to a second for the answer after every input, idle.
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in list(os.environ):
        if key.startswith("APPSHELL_") or key in ("DATABASE_URL", "SOURCE_VERSION", "PYTHONSTARTUP"):
            monkeypatch.delenv(key)
    # IPython keeps history and config here, the review server its key: never the developer's own.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


# Issue 22 attack 1: a statement appends hash-less records of its own session (a fake statement, its result and
# a session_end), to hide what it really ran from the readers (tests/test_audit_readers.py, the review page's).
HIDE = """
import json
p = {log!r}
recs = [json.loads(l) for l in open(p)]
me = recs[-1]
sid, n = me['session'], me['n']
fake = [
    {{"v": 1, "ts": me['ts'], "session": sid, "event": "statement", "n": n, "source": "print(count(Product))", "kind": "code"}},
    {{"v": 1, "ts": me['ts'], "session": sid, "event": "result", "n": n, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []}},
    {{"v": 1, "ts": me['ts'], "session": sid, "event": "session_end", "status": "ok", "statements": 1, "duration_ms": 2.0}},
]
with open(p, 'a') as f:
    for r in fake:
        f.write(json.dumps(r) + "\\n")
"""


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# In-process or a real process (docs/design.md §9). A test module opts in with
# `pytestmark = pytest.mark.in_process`: then run() calls cli.main in this process, inside
# appshell.runtime.process_state.process_state(), like click's CliRunner. A test that only a real
# process can show (signals, ptys, re-exec, fork, os._exit/atexit, threads left running, the
# console script's entry() itself) carries @pytest.mark.subprocess, or passes process=True.
_in_process_test = False
# APPSHELL_TEST_SUBPROCESS=1: every run() a real process, as before the in-process harness (to compare, or to rule it out).
_ALL_SUBPROCESS = os.environ.get("APPSHELL_TEST_SUBPROCESS", "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "in_process: run() calls appshell's main() in this process (a CliRunner-style harness)")
    config.addinivalue_line("markers", "subprocess: run() starts the real console script (only a real process shows what this test checks)")


@pytest.fixture(autouse=True)
def _run_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    global _in_process_test
    _in_process_test = (not _ALL_SUBPROCESS and request.node.get_closest_marker("in_process") is not None
                        and request.node.get_closest_marker("subprocess") is None)
    before = _processes_started
    try:
        yield
    finally:
        _in_process_test = False
        # Carried by the teardown report, so a pytest-xdist worker's count reaches the controller.
        request.node.user_properties.append(("processes_started", _processes_started - before))


# How many test cases started no process at all (the terminal summary says): every process a
# test starts passes through subprocess.Popen, os.fork or os.forkpty (pexpect), counted here.
_processes_started = 0
_started_by_test: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "processes_started" and report.when == "teardown":
            _started_by_test[report.nodeid] = int(value)


def _counting(fn: Callable[..., object]) -> Callable[..., object]:
    def counted(*args: object, **kwargs: object) -> object:
        global _processes_started
        _processes_started += 1
        return fn(*args, **kwargs)

    return counted


subprocess.Popen._execute_child = _counting(subprocess.Popen._execute_child)  # type: ignore[attr-defined]
os.fork = _counting(os.fork)  # type: ignore[assignment]
os.forkpty = _counting(os.forkpty)  # type: ignore[assignment]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started_by_test:
        alone = sum(1 for n in _started_by_test.values() if n == 0)
        share = 100 * alone // len(_started_by_test)
        terminalreporter.write_line(f"in-process: {alone} of {len(_started_by_test)} test cases started no process ({share}%)")


def _may_reexec(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> bool:
    """Would appshell re-execute itself (os.execve would replace this test process)?"""
    if "--no-reexec" in args or env.get("APPSHELL_REEXECUTED"):
        return False
    return bool(env.get("APPSHELL_PYTHON")) or any((folder / ".venv").exists() for folder in (cwd, *cwd.parents))


def run(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    *,
    process: bool | None = None,
) -> Result:
    """Run appshell without a tty: in this process in modules marked in_process (unless *process*
    is true), else the real `appshell` console script in a subprocess."""
    environ = clean_environ(env)
    in_process = _in_process_test if process is None else not process
    if in_process and not _ALL_SUBPROCESS and not _may_reexec(args, Path(cwd), environ):
        return run_in_process(args, cwd, environ, input, timeout)
    proc = subprocess.run(
        [APPSHELL, *args],
        cwd=cwd,
        env=environ,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class _Stream(io.TextIOWrapper):
    """A captured standard stream: text over bytes (``.buffer`` works), never a tty, no file descriptor."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="surrogateescape", write_through=True)

    def close(self) -> None:  # the program may close sys.stdout; what it wrote stays readable
        self.flush()

    def text(self) -> str:
        self.flush()
        data = self.buffer.getvalue()  # type: ignore[attr-defined]
        # As subprocess.run(text=True) reads it: universal newlines.
        return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


# sys.path as the console script starts with it: its own folder first, not pytest's rootdir or cwd.
_SCRIPT_PATH = [str(Path(APPSHELL).parent)] + [p for p in sys.path if p not in ("", str(ROOT), str(ROOT / "tests"), os.getcwd())]


class InProcessTimeout(Exception):
    """An in-process run took longer than its timeout."""


def _timed_out(signum: int, frame: object) -> None:
    raise InProcessTimeout("the in-process run did not end in time")


def run_in_process(args: Sequence[str], cwd: Path, environ: Mapping[str, str], input: str | None = None, timeout: float = 120) -> Result:
    """appshell's `main(args)` in this process, as the console script would run it: environment,
    working directory, argv, stdin/stdout/stderr, sys.path set, everything put back after."""
    from appshell.cli.main import main

    out, err = _Stream(), _Stream()
    extra = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in _SCRIPT_PATH]
    # A test's own PYTHONPATH, as the interpreter reads it.
    with _as_a_process(environ, cwd, [APPSHELL, *args], [_SCRIPT_PATH[0], *extra, *_SCRIPT_PATH[1:]]):
        sys.stdin, sys.stdout, sys.stderr = _Stream((input or "").encode()), out, err
        signal.signal(signal.SIGALRM, _timed_out)  # as subprocess.run(timeout=...) would: a hung run fails the test
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help and --version; what Python does with the rest
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - a bug's traceback, as the interpreter would print it
            traceback.print_exc()
            code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for stream in (out, err):
                stream.flush()
            _forget_sqlmodel_tables()
    _retire_session_listeners()
    return Result(code, out.text(), err.text())


def run_module(module: str, cwd: Path, env: Mapping[str, str] | None = None, *, process: bool | None = None) -> None:
    """`python -m MODULE` for a test app's own script (a seed), which must succeed: in this process
    in modules marked in_process (inside process_state, as run() does), else a subprocess. A
    fixture wider than a test (a template seeded once) says which with *process*: the in_process
    mark is read per test, after such a fixture is made."""
    environ = clean_environ(env)
    in_process = _in_process_test if process is None else not process
    if _ALL_SUBPROCESS or not in_process:
        subprocess.run([sys.executable, "-m", module], cwd=cwd, env=environ, check=True, capture_output=True)
        return
    import runpy

    with _as_a_process(environ, cwd, [module], [str(cwd), *_SCRIPT_PATH[1:]]):  # `python -m` puts the working directory first
        runpy.run_module(module, run_name="__main__", alter_sys=True)


@contextmanager
def _as_a_process(environ: Mapping[str, str], cwd: Path, argv: list[str], path: list[str]) -> Iterator[None]:
    """This process set up as a new one would start with *environ*, *cwd*, *argv* and *path*
    (sys.path), and everything put back after (process_state)."""
    from appshell.runtime.process_state import process_state

    with _before_the_run_unseen(), process_state():
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        sys.argv = argv
        sys.path[:] = path
        sys.dont_write_bytecode = True  # PYTHONDONTWRITEBYTECODE=1, as clean_environ gives a subprocess
        yield


@contextmanager
def _before_the_run_unseen() -> Iterator[None]:
    """What is alive before a run — the fixtures' and the test's own engines, earlier runs' not yet
    collected, the whole test process — would not exist in the console script's process: frozen
    (gc.freeze), it is out of appshell's sight, whose sandbox, read-only and audit cover every engine
    alive in the process (docs/design.md §5): its one pass over the heap for them sees only the
    run's own objects, as in the console script. (Over the whole test process's heap that pass
    was most of an in-process run's time.) Frozen objects are not collected either: no earlier
    run's pool is finalised in the middle of this one."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _retire_session_listeners() -> None:
    """The ended session's listeners on SQLAlchemy's classes: a process runs one session, so in the
    console script they die with it; here they would pile up, quiet but called on every statement
    of every later test (thousands by the end of the suite)."""
    engines = sys.modules.get("appshell.safety.engines")
    if engines is not None:
        engines.retire_ended()


def _forget_sqlmodel_tables() -> None:
    """SQLModel keeps every app's tables in one process-wide MetaData and registry (a library's
    global, not appshell's): the next app that defines `hero` must not find the last one's."""
    sqlmodel = sys.modules.get("sqlmodel")
    if sqlmodel is None:
        return
    base = sqlmodel.SQLModel
    for table in list(base.metadata.tables.values()):
        base.metadata.remove(table)
    base._sa_registry.dispose()


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Copy a test app from tests/apps into tmp_path, so each test has its own files."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(APPS / name, target)
        return target

    yield copy


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="session")
def _seeded_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example shop seeded once per test run: each test copies it (a file copy, not a seed run)."""
    template = tmp_path_factory.mktemp("template") / "shop"
    shutil.copytree(SHOP, template, ignore=shutil.ignore_patterns("var", "__pycache__", ".env", ".appshell"))
    run_module("shop.seed", template, process=False)
    return template


@pytest.fixture
def shop(tmp_path: Path, _seeded_shop: Path) -> Path:
    """A seeded copy of the example shop (its SQLite database lives in the copy)."""
    target = tmp_path / "shop"
    shutil.copytree(_seeded_shop, target, ignore=shutil.ignore_patterns("__pycache__", ".appshell"))
    return target


def server_or_skip(engine: Any, server: str) -> None:
    """The database server (*server*: its name) answers through *engine*; else the test is skipped (failed under CI)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        unavailable(f"{server} is not reachable at {engine.url.render_as_string(hide_password=True)}: {exc}", "every database server")


def unavailable(message: str, required: str) -> NoReturn:
    """Skip the test with *message*; under CI, which must run every test, fail it ("CI requires *required*")."""
    if IN_CI:
        pytest.fail(f"CI requires {required}: {message}")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server; skipped (or, under CI, failed) if it is down."""
    with pg_schema() as url:
        yield url


@contextmanager
def pg_schema() -> Iterator[str]:
    """A schema of its own on the PostgreSQL server (the URL's search_path), dropped at the end."""
    from sqlalchemy import create_engine, text

    base = PG_URL
    engine = create_engine(base)
    server_or_skip(engine, "PostgreSQL")
    schema = f"appshell_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def asyncpg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the asyncpg driver (which takes no `options` in the URL,
    so the per-test schema of pg_url cannot be used): postgresql+asyncpg://…/appshell_xxx."""
    with asyncpg_database() as url:
        yield url


@contextmanager
def asyncpg_database(template: str | None = None) -> Iterator[str]:
    """A PostgreSQL database of its own (a copy of *template*, if given), its asyncpg URL; dropped
    at the end. Skipped if the server is down — failed under CI."""
    from sqlalchemy import create_engine, make_url, text

    name = f"appshell_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    server_or_skip(admin, "PostgreSQL")
    with admin.connect() as conn:
        conn.execute(text(f"create database {name}" + (f" template {template}" if template else "")))
    try:
        yield make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"drop database {name} with (force)"))
        admin.dispose()


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def async_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An async driver's URL: once SQLite through aiosqlite, once PostgreSQL through asyncpg."""
    if request.param == "aiosqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    return str(request.getfixturevalue("asyncpg_url"))


@pytest.fixture(scope="session")
def _asyncapp_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/apps/asyncapp seeded once per test run on aiosqlite (async.db in the folder): tests copy it."""
    root = tmp_path_factory.mktemp("template") / "asyncapp"
    shutil.copytree(APPS / "asyncapp", root)
    run_module("asyncapp.seed", root, {"DATABASE_URL": f"sqlite+aiosqlite:///{root / 'async.db'}"}, process=False)
    return root


@pytest.fixture(scope="session")
def _asyncapp_pg_template(_asyncapp_template: Path) -> Iterator[str]:
    """A PostgreSQL database seeded once per test run through asyncpg, its name: tests get a copy."""
    from sqlalchemy import make_url

    with asyncpg_database() as url:
        run_module("asyncapp.seed", _asyncapp_template, {"DATABASE_URL": url}, process=False)
        yield str(make_url(url).database)


@pytest.fixture
def aiosqlite_app(app_dir: Callable[[str], Path], tmp_path: Path, _asyncapp_template: Path) -> tuple[Path, dict[str, str]]:
    """tests/apps/asyncapp with its two books (Dune, Emma) on aiosqlite: a copy of the seeded file."""
    shutil.copyfile(_asyncapp_template / "async.db", tmp_path / "async.db")
    return app_dir("asyncapp"), {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"}


@pytest.fixture
def asyncpg_app(app_dir: Callable[[str], Path], _asyncapp_pg_template: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """tests/apps/asyncapp with its two books on PostgreSQL through asyncpg: a copy of the seeded database."""
    with asyncpg_database(template=_asyncapp_pg_template) as url:
        yield app_dir("asyncapp"), {"DATABASE_URL": url}


def titles(root: Path, env: Mapping[str, str]) -> list[str]:
    """The asyncapp's book titles now, read by a fresh session that writes nothing."""
    result = run(["--app", "asyncapp.db", "-c", "import json\nprint(json.dumps(sorted(b.title for b in where(Book))))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def asyncapp(request: pytest.FixtureRequest) -> tuple[Path, dict[str, str]]:
    """tests/apps/asyncapp with its two books, on aiosqlite and on asyncpg."""
    return request.getfixturevalue(f"{request.param}_app")  # type: ignore[no-any-return]


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh database on the local MariaDB/MySQL server; skipped (or, under CI, failed) if it is down."""
    from sqlalchemy import create_engine, text

    base = MYSQL_URL
    engine = create_engine(base)
    server_or_skip(engine, "MariaDB/MySQL")
    name = f"appshell_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(text(f"create database {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop database {name}"))
        engine.dispose()


LIBRARY_SETUP = textwrap.dedent("""
    metadata.create_all(engine)
    herbert = Author(name="Herbert")
    session.add_all([Book(title="Dune", year=1965, author=herbert), Book(title="Children of Dune", year=1976, author=herbert)])
    commit()
""")


def library_on(app_dir: Callable[[str], Path], url: str) -> tuple[Path, dict[str, str]]:
    """tests/apps/plainapp with two books by one author, on the database at *url*."""
    root = app_dir("plainapp")
    env = {"DATABASE_URL": url}
    assert run(["-c", LIBRARY_SETUP], cwd=root, env=env).exit_code == 0
    return root, env


@dataclass
class Scratch:
    """A scratch PostgreSQL database and a login role of its own (pg_scratch)."""

    admin_url: str  # postgres, on the scratch database
    app_url: str  # the app's role on it
    app: str
    database: str


@contextmanager
def pg_scratch(*grants: str) -> Iterator[Scratch]:
    """A database and a login role of their own, both dropped at the end; *grants* run as postgres
    right after, with {database} and {app} filled in."""
    from sqlalchemy import create_engine, make_url, text

    suffix = uuid.uuid4().hex[:10]
    name, app = f"appshell_{suffix}", f"shop_app_{suffix}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    server_or_skip(admin, "PostgreSQL")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
        conn.execute(text(f"CREATE ROLE {app} LOGIN"))
        for grant in grants:
            conn.execute(text(grant.format(database=name, app=app)))
    base = make_url(PG_URL).set(database=name)
    try:
        yield Scratch(base.render_as_string(hide_password=False), base.set(username=app).render_as_string(hide_password=False), app, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE {app}"))
        admin.dispose()


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[str]:
    """A role with SELECT rights only on the test's schema; yields its URL."""
    from sqlalchemy import create_engine, make_url, text

    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"ro_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}"))
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


@pytest.fixture
def url_of(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A fresh database of the kind asked for (sqlite, postgresql, mariadb): its URL (the servers' skipped, or under CI failed, if down)."""
    def url(kind: str) -> str:
        return str(request.getfixturevalue({"postgresql": "pg_url", "sqlite": "sqlite_url", "mariadb": "mariadb_url"}[kind]))

    return url


@pytest.fixture
def library_of(app_dir: Callable[[str], Path], url_of: Callable[[str], str]) -> Callable[[str], tuple[Path, dict[str, str]]]:
    """The library app (two books, year 1965 and 1976) on the database of the kind asked for."""
    def make(kind: str) -> tuple[Path, dict[str, str]]:
        return library_on(app_dir, url_of(kind))

    return make


@pytest.fixture
def library(app_dir: Callable[[str], Path], db_url: str) -> tuple[Path, dict[str, str]]:
    """tests/apps/plainapp with two books by one author, on SQLite and on PostgreSQL."""
    return library_on(app_dir, db_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def shop_web(shop: Path, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """The example shop's web process on a free port, ready to answer; yields the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shop.web"], cwd=shop, env=clean_environ({**(env or {}), "PORT": str(port)}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"the shop's web process exited ({proc.returncode}) before answering /health")
                time.sleep(0.1)
        else:
            pytest.fail(f"the shop's web process did not answer /health on port {port} within 10 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """Run appshell's `main()` in this process (a CliRunner-style harness) for fast logic tests."""

    def _invoke(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        return run_in_process(args, cwd, clean_environ(env), input)

    return _invoke


def end_input(child: pexpect.spawn) -> None:
    """Ctrl-D at the prompt, and the shell's end (EOF).

    IPython and ptpython redraw the typed line, prompt included, when it is accepted, so a
    prompt pattern can match that redraw while the statement still runs, the terminal in cooked
    mode: there a Ctrl-D is an end-of-file for a read nobody makes, and is gone, as at a real
    terminal. If the shell has not ended after a while, the prompt is a fresh one now: press it again."""
    child.sendcontrol("d")
    if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5) == 1:
        child.sendcontrol("d")
        child.expect(pexpect.EOF)


def leave(child: pexpect.spawn) -> None:
    """Ctrl-D at a fresh prompt: the shell must end, and end with exit code 0."""
    end_input(child)
    child.close()
    assert child.exitstatus == 0, child.before


def spawn_shell(cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30, term: str = "xterm",
                columns: int = 120, preexec_fn: Callable[[], None] | None = None) -> pexpect.spawn:
    """The real `appshell` in a real pseudo-terminal (an interactive shell), 40 rows by *columns*."""
    return pexpect.spawn(APPSHELL, list(args), cwd=str(cwd), env={**clean_environ(env), "TERM": term, "COLUMNS": str(columns), "LINES": "40"},
                         encoding="utf-8", timeout=timeout, dimensions=(40, columns), preexec_fn=preexec_fn)


def started(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The real `appshell ARGS` running, once its program has printed `go` (a line of its own): a
    signal sent now lands mid-statement. stdout and stderr are pipes; the caller ends the process."""
    proc = subprocess.Popen([APPSHELL, *args], cwd=cwd, env=clean_environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"go":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"appshell did not start its statement: {(line + err).decode(errors='replace')}")
    return proc


def audit_records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """Every record of a file sink, in order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_init(shop: Path, log: Path) -> str:
    """`appshell audit init` on *log*: the verification key it shows once."""
    import re

    result = run(["audit", "init", "--log", str(log)], cwd=shop)
    assert result.exit_code == 0, result.output
    found = re.search(r"verification key \(shown once, keep it off this host\): (fss1-[0-9a-f]{64})", result.stdout)
    assert found is not None, result.stdout
    return found[1]


def console_blocks(text: str, tag: str = "") -> list[list[tuple[str, str, int]]]:
    """The ```console blocks of a docs page (```console TAG ones, given *tag*): each a list of
    (command, what it prints, exit code), in order; `[exit N]` closing an output names its code."""
    import re

    found = []
    for block in re.findall(r"```console" + (" " + re.escape(tag) if tag else "") + r"\n(.*?)```", text, re.S):
        examples = []
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            code = 0
            if m := re.search(r"^\[exit (\d+)\]\n\Z", output, re.M):
                code, output = int(m[1]), output[: m.start()]
            examples.append((command, output, code))
        found.append(examples)
    return found
