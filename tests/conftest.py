"""Shared fixtures: a clean environment, real subprocesses, real SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "apps"
SHOP = ROOT / "examples" / "shop"
APPSHELL = str(Path(sys.executable).with_name("appshell"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any appshell setting or database URL."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("APPSHELL_") or k in ("DATABASE_URL", "SOURCE_VERSION", "PYTHONSTARTUP"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in list(os.environ):
        if key.startswith("APPSHELL_") or key in ("DATABASE_URL", "SOURCE_VERSION", "PYTHONSTARTUP"):
            monkeypatch.delenv(key)
    # IPython keeps history and config here: never the developer's own.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> Result:
    """Run the real `appshell` console script in a subprocess, without a tty."""
    proc = subprocess.run(
        [APPSHELL, *args],
        cwd=cwd,
        env=clean_environ(env),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


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
    subprocess.run([sys.executable, "-m", "shop.seed"], cwd=template, env=clean_environ(), check=True, capture_output=True)
    return template


@pytest.fixture
def shop(tmp_path: Path, _seeded_shop: Path) -> Path:
    """A seeded copy of the example shop (its SQLite database lives in the copy)."""
    target = tmp_path / "shop"
    shutil.copytree(_seeded_shop, target, ignore=shutil.ignore_patterns("__pycache__", ".appshell"))
    return target


def _pg_base_url() -> str:
    return os.environ.get("APPSHELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server; skipped (or, under CI, failed) if it is down."""
    from sqlalchemy import create_engine, text

    base = _pg_base_url()
    engine = create_engine(base)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        message = f"PostgreSQL is not reachable at {base}: {exc}"
        if IN_CI:
            pytest.fail("CI requires PostgreSQL: " + message)
        pytest.skip(message)
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
def asyncpg_url(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the asyncpg driver (which takes no `options` in the URL,
    so the per-test schema of pg_url cannot be used): postgresql+asyncpg://…/appshell_xxx."""
    from sqlalchemy import create_engine, make_url, text

    name = f"appshell_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_pg_base_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"create database {name}"))
    try:
        yield make_url(_pg_base_url()).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
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


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh database on the local MariaDB/MySQL server; skipped (with the reason) if there is none."""
    from sqlalchemy import create_engine, text

    base = os.environ.get("APPSHELL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
    engine = create_engine(base)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"MariaDB/MySQL is not reachable at {base}: {exc}")
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
def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run appshell's `main()` in this process (a CliRunner-style harness) for fast logic tests."""
    import signal

    from appshell.cli import main

    def _invoke(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> Result:
        monkeypatch.chdir(cwd)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help and --version exit on their own
            code = int(exc.code or 0)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return _invoke


def leave(child: pexpect.spawn) -> None:
    """Ctrl-D at a fresh prompt: the shell must end, and end with exit code 0."""
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before


def spawn_shell(cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30) -> pexpect.spawn:
    """The real `appshell` in a real pseudo-terminal (an interactive shell)."""
    return pexpect.spawn(APPSHELL, list(args), cwd=str(cwd), env={**clean_environ(env), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
                         encoding="utf-8", timeout=timeout, dimensions=(40, 120))


def audit_records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """Every record of a file sink, in order."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
