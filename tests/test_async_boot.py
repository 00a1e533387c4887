"""Booting async apps (issue 12, items 1, 2, 6, 7): discovery, providers, async URLs, one-line errors."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.databases import asyncpg_database
from support.harness import run, run_module
from support.paths import APPS

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

WHAT = "print(type(session).__name__, type(engine).__name__, count(Book))"


@pytest.fixture
def asyncapp(app_dir: Callable[[str], Path], async_url: str) -> tuple[Path, dict[str, str]]:
    """tests/apps/asyncapp with its two books, on aiosqlite and on asyncpg."""
    root = app_dir("asyncapp")
    env = {"DATABASE_URL": async_url}
    run_module("asyncapp.seed", root, env)
    return root, env


@pytest.fixture(scope="session")
def _shared_books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The asyncpg URL of one PostgreSQL database with the two books, seeded once per test run."""
    root = tmp_path_factory.mktemp("books") / "asyncapp"
    shutil.copytree(APPS / "asyncapp", root)
    with asyncpg_database() as url:
        run_module("asyncapp.seed", root, {"DATABASE_URL": url}, process=False)
        yield url


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def books(
    request: pytest.FixtureRequest, app_dir: Callable[[str], Path], tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """As asyncapp, for a test that writes nothing to the database: on asyncpg, one database for all
    of them (a PostgreSQL database per test costs more than the test). A test that wrote to it
    anyway would make the others count 3 books and fail."""
    root = app_dir("asyncapp")
    if request.param == "aiosqlite":
        env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"}
        run_module("asyncapp.seed", root, env)
        return root, env
    return root, {"DATABASE_URL": request.getfixturevalue("_shared_books")}


@pytest.mark.parametrize(
    "args",
    [
        ["--app", "asyncapp.db"],  # a module with an AsyncEngine and an async_sessionmaker
        ["--app", "asyncapp.providers:mapping"],  # {"engine": AsyncEngine}
        ["--app", "asyncapp.providers:make"],  # a coroutine returning {"session": AsyncSession}
        ["--app", "asyncapp.providers:lifespan"],  # an async context manager
        ["--app", "asyncapp.providers:get_db"],  # an async generator (a FastAPI dependency)
        ["--app", "asyncapp.providers:scoped"],  # an async_scoped_session
        ["--models", "asyncapp.models"],  # no engine in the app: DATABASE_URL's async driver
    ],
)
def test_an_async_app_boots_with_its_async_session(books: tuple[Path, dict[str, str]], args: list[str]) -> None:
    root, env = books
    result = run([*args, "-c", WHAT], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "AsyncSession AsyncEngine 2", result.output


@pytest.mark.parametrize("provider, said", [("get_db", "get_db closed"), ("lifespan", "lifespan closed")])
def test_an_async_providers_teardown_is_awaited_at_the_end(
    books: tuple[Path, dict[str, str]], provider: str, said: str
) -> None:
    root, env = books
    result = run(["--app", f"asyncapp.providers:{provider}", "-c", "print(count(Book))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert (root / "teardown.txt").read_text() == said + "\n"


def test_the_apps_async_functions_take_the_session_and_helpers_need_no_await(
    asyncapp: tuple[Path, dict[str, str]],
) -> None:
    root, env = asyncapp
    code = (
        "from asyncapp.db import add_book\n"
        "book = await add_book(session, 'Ulysses')\n"
        "print(book.id, count(Book), first(Book, title='Ulysses').id == book.id)\n"  # a helper inside awaiting code
        "commit()\n"
        "print(len(where(Book)), [b.title for b in where(Book)])\n"
        "print((await session.get(Book, 1)).title, find(Book, 1).title)\n"
    )
    result = run(["--app", "asyncapp.db", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["3 3 True", "3 ['Dune', 'Emma', 'Ulysses']", "Dune Dune"], result.output
    again = run(["--app", "asyncapp.db", "-c", "print(count(Book))"], cwd=root, env=env)
    assert again.stdout.strip() == "3", again.output  # commit() committed through the AsyncSession


def test_uncommitted_async_work_is_rolled_back_at_the_end(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    result = run(
        [
            "--app",
            "asyncapp.db",
            "-c",
            "from asyncapp.db import add_book\nawait add_book(session, 'X')\nprint(count(Book))",
        ],
        cwd=root,
        env=env,
    )
    assert result.stdout.strip() == "3", result.output
    assert run(["--app", "asyncapp.db", "-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "2"


def test_asyncio_run_runs_on_the_sessions_loop_with_a_hint(books: tuple[Path, dict[str, str]]) -> None:
    root, env = books
    script = root / "fix.py"
    script.write_text(
        "import asyncio\n"
        "from asyncapp.db import SessionLocal, Book\n"
        "async def main():\n"
        "    async with SessionLocal() as s:\n"
        "        return (await s.get(Book, 2)).title\n"
        "print(asyncio.run(main()))\n"
        "print(asyncio.run(main()), count(Book))\n"  # the app's pool, still usable: one loop for everything
    )
    result = run(["--app", "asyncapp.db", str(script)], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Emma", "Emma 2"], result.output
    hints = [line for line in result.stderr.splitlines() if "asyncio.run" in line]
    assert hints == [
        "appshell: hint: write `await …` instead of asyncio.run(…): it "
        "ran on the session's event loop, where the app's connections live"
    ], result.output


def test_a_database_url_with_an_async_driver_reaches_the_app_unchanged(books: tuple[Path, dict[str, str]]) -> None:
    root, env = books
    result = run(
        [
            "--app",
            "asyncapp.db",
            "-c",
            "import os; print(os.environ['DATABASE_URL'] == str(engine.url.render_as_string(hide_password=False)))",
        ],
        cwd=root,
        env=env,
    )
    assert result.stdout.strip() == "True", result.output


def test_an_unreachable_asyncpg_server_is_one_line(app_dir: Callable[[str], Path]) -> None:
    root = app_dir("asyncapp")
    result = run(
        ["--app", "asyncapp.db", "-c", "1"],
        cwd=root,
        env={"DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none"},
    )
    assert result.exit_code == 2, result.output  # as for a sync URL (docs/design.md §7: the configuration is wrong)
    assert result.stderr.startswith(
        "appshell: error: cannot connect to postgresql+asyncpg://nobody@127.0.0.1:1/none"
    ), result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.output


def test_a_sync_url_given_to_an_async_app_names_the_fix(app_dir: Callable[[str], Path], tmp_path: Path) -> None:
    root = app_dir("asyncapp")
    result = run(["--app", "asyncapp.db", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "-c", "1"], cwd=root)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "appshell: hint: the app makes an async engine: give DATABASE_URL/--database-url an async driver, "
        "such as postgresql+asyncpg://, sqlite+aiosqlite:// or mysql+aiomysql:// (pip install 'appshell[async]')"
    ), result.output


def test_an_async_driver_that_is_not_installed_is_one_line(app_dir: Callable[[str], Path]) -> None:
    root = app_dir("asyncapp")
    # A driver SQLAlchemy knows and the test environment does not
    # install (asyncmy and aiomysql are: tests/test_drivers.py).
    result = run(
        ["--models", "asyncapp.models", "-c", "1"],
        cwd=root,
        env={"DATABASE_URL": "postgresql+pg8000://root@127.0.0.1/x"},
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "appshell: error: the database driver 'pg8000' is not installed "
        "— install it (pip install 'appshell[postgres]' for PostgreSQL, "
        "'appshell[mysql]' for MySQL, 'appshell[async]' for asyncpg/aiosqlite)"
    ), result.output
