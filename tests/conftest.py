"""Shared fixtures and pytest hooks: a clean environment, fixture apps, real SQLite, PostgreSQL and MariaDB.

The helpers they use, and that tests import, live in tests/support/ (tests/ is on sys.path:
`from support.harness import run`)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from support import process_count
from support.apps import library_on
from support.databases import asyncpg_database, mariadb_database, pg_readonly_role, pg_schema
from support.environment import clean_environ, is_cleared
from support.harness import Result, in_process_mode, run_in_process, run_module
from support.paths import APPS, SHOP


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "in_process: run() calls appshell's main() in this process (a CliRunner-style harness)"
    )
    config.addinivalue_line(
        "markers", "subprocess: run() starts the real console script (only a real process shows what this test checks)"
    )
    # Started as a background job of a shell without job control (`./scripts/test &`, some CI runners),
    # this process ignores SIGINT, and so would every process it starts — an ignored signal stays
    # ignored across exec, and Python then installs no KeyboardInterrupt handler. The tests that press
    # Ctrl-C need their shells as an operator's terminal starts them: with SIGINT's default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    process_count.install()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "processes_started" and report.when == "teardown":
            process_count.record(report.nodeid, int(value))  # type: ignore[call-overload]  # user_properties are (str, object)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if line := process_count.summary():
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in list(os.environ):
        if is_cleared(key):
            monkeypatch.delenv(key)
    # IPython keeps history and config here, the review server its key: never the developer's own.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(autouse=True)
def _run_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """run() in this process for a test marked in_process (not subprocess); the processes it started, counted."""
    in_process = (
        request.node.get_closest_marker("in_process") is not None
        and request.node.get_closest_marker("subprocess") is None
    )
    before = process_count.started()
    try:
        with in_process_mode(in_process):
            yield
    finally:
        # Carried by the teardown report, so a pytest-xdist worker's count reaches the controller.
        request.node.user_properties.append(("processes_started", process_count.started() - before))


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """Run appshell's `main()` in this process (a CliRunner-style harness) for fast logic tests."""

    def _invoke(
        args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, input: str | None = None
    ) -> Result:
        return run_in_process(args, cwd, clean_environ(env), input)

    return _invoke


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Copy a test app from tests/apps into tmp_path, so each test has its own files."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(APPS / name, target)
        return target

    yield copy


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server; skipped (or, under CI, failed) if it is down."""
    with pg_schema() as url:
        yield url


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


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def async_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An async driver's URL: once SQLite through aiosqlite, once PostgreSQL through asyncpg."""
    if request.param == "aiosqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    return str(request.getfixturevalue("asyncpg_url"))


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh database on the local MariaDB/MySQL server; skipped (or, under CI, failed) if it is down."""
    with mariadb_database() as url:
        yield url


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[str]:
    """A role with SELECT rights only on the test's schema; yields its URL."""
    with pg_readonly_role(pg_url) as url:
        yield url


@pytest.fixture
def url_of(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A fresh database of the kind asked for (sqlite, postgresql, mariadb):
    its URL (the servers' skipped, or under CI failed, if down)."""

    def url(kind: str) -> str:
        return str(
            request.getfixturevalue({"postgresql": "pg_url", "sqlite": "sqlite_url", "mariadb": "mariadb_url"}[kind])
        )

    return url


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
def aiosqlite_app(
    app_dir: Callable[[str], Path], tmp_path: Path, _asyncapp_template: Path
) -> tuple[Path, dict[str, str]]:
    """tests/apps/asyncapp with its two books (Dune, Emma) on aiosqlite: a copy of the seeded file."""
    shutil.copyfile(_asyncapp_template / "async.db", tmp_path / "async.db")
    return app_dir("asyncapp"), {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"}


@pytest.fixture
def asyncpg_app(app_dir: Callable[[str], Path], _asyncapp_pg_template: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """tests/apps/asyncapp with its two books on PostgreSQL through asyncpg: a copy of the seeded database."""
    with asyncpg_database(template=_asyncapp_pg_template) as url:
        yield app_dir("asyncapp"), {"DATABASE_URL": url}


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def asyncapp(request: pytest.FixtureRequest) -> tuple[Path, dict[str, str]]:
    """tests/apps/asyncapp with its two books, on aiosqlite and on asyncpg."""
    return request.getfixturevalue(f"{request.param}_app")  # type: ignore[no-any-return]


@pytest.fixture
def library_of(
    app_dir: Callable[[str], Path], url_of: Callable[[str], str]
) -> Callable[[str], tuple[Path, dict[str, str]]]:
    """The library app (two books, year 1965 and 1976) on the database of the kind asked for."""

    def make(kind: str) -> tuple[Path, dict[str, str]]:
        return library_on(app_dir, url_of(kind))

    return make


@pytest.fixture
def library(app_dir: Callable[[str], Path], db_url: str) -> tuple[Path, dict[str, str]]:
    """tests/apps/plainapp with two books by one author, on SQLite and on PostgreSQL."""
    return library_on(app_dir, db_url)
