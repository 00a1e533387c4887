"""Issue 20 item 6: discovery of real third-party apps — lazily exported models, an unbound session
factory, a provider's unusable return value, and an app that makes its own engine."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

Apps = Callable[[str], Path]


def json_of(cwd: Path, env: dict[str, str], code: str, *args: str) -> object:
    result = run([*args, "--json", "-c", code], cwd=cwd, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@contextmanager
def booted(root: Path, env: dict[str, str], **flags: Any) -> Iterator[Any]:
    """The app at *root* booted in this process as `appshell` would boot it (for the functions doctor
    calls with the context); all process-wide state put back after."""
    from support.process_state import process_state

    from appshell.boot.context import boot
    from appshell.config.settings import export_environment, resolve
    from appshell.hooks import aio

    with process_state():
        os.environ.update(env)
        os.chdir(root)
        sys.dont_write_bytecode = True
        settings = resolve(flags, cwd=root)
        export_environment(settings)
        ctx = boot(settings)
        try:
            yield ctx
        finally:
            try:
                ctx.close()
            finally:
                aio.close()


# --- lazily exported models -------------------------------------------------------------------

LAZY_MODELS = ["Category", "Order", "OrderLine", "Product", "User"]


def test_models_exported_lazily_through_all_are_found(app_dir: Apps, db_url: str) -> None:
    root = app_dir("lazymodels")  # models = ["lazymodels.models"]: only User is imported eagerly
    code = (
        "metadata.create_all(engine); session.add(Category(name='books')); commit(); "
        "[sorted(k for k, v in globals().items() if hasattr(v, '__table__')), count(Category), sorted(metadata.tables)]"
    )
    result = run(["--json", "-c", code], cwd=root, env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [LAZY_MODELS, 1, ["categories", "order_lines", "orders", "products", "users"]]
    # Refund is listed in __all__ and defined nowhere: one warning line, the session still opens.
    assert result.stderr.count("appshell: warning:") == 1
    assert (
        "appshell: warning: lazymodels.models.__all__ lists 1 name that "
        "it does not define: Refund — fix its __all__ or its __getattr__\n" in result.stderr
    )


def test_submodules_that_all_names_are_imported_as_import_star_would(app_dir: Apps, sqlite_url: str) -> None:
    result = run(
        [
            "--models",
            "lazymodels.legacy",
            "--json",
            "-c",
            "sorted(k for k, v in globals().items() if hasattr(v, '__table__'))",
        ],
        cwd=app_dir("lazymodels"),
        env={"DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["LedgerEntry", "User"]  # User: the base's registry holds it too
    assert result.stderr == (
        "appshell: warning: lazymodels.legacy.__all__ lists 1 name that it does not define: archive "
        "— fix its __all__ or its __getattr__\n"
    )


def test_a_crash_inside_a_lazy_export_shows_its_traceback(app_dir: Apps, sqlite_url: str) -> None:
    # An AttributeError raised inside the module that __getattr__ imports is the app's bug, not "not found".
    result = run(
        ["--models", "lazymodels.crashing", "-c", "1"], cwd=app_dir("lazymodels"), env={"DATABASE_URL": sqlite_url}
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" in result.stderr and "billing.py" in result.stderr and "missing_setting" in result.stderr
    assert result.stderr.endswith(
        "appshell: error: importing 'lazymodels.crashing.Invoice' (listed in "
        "its __all__) failed (the traceback above is from the app's own code)\n"
    )


# --- an unbound session factory -----------------------------------------------------------------


def test_an_unbound_scoped_session_is_bound_to_the_shells_engine(app_dir: Apps, db_url: str) -> None:
    root = app_dir(
        "unboundapp"
    )  # models = ["unboundapp.models"]: DBSession = scoped_session(sessionmaker()), bound at run time
    code = (
        "metadata.create_all(engine); from unboundapp.models import DBSession; "
        "from unboundapp.services import add_task; "
        "add_task('reindex'); commit(); "
        "[count(Task), session is DBSession, DBSession.get_bind() is engine, "
        "DBSession.session_factory.kw.get('bind') is None]"
    )
    # The app's code (add_task uses DBSession) and the shell's helpers share the one session and engine;
    # the app's factory is left as the app wrote it.
    assert json_of(root, {}, code, "--database-url", db_url) == [1, True, True, True]


def test_doctor_session_check_runs_a_query_through_the_session_handed_out(
    app_dir: Apps, sqlite_url: str, tmp_path: Path
) -> None:
    from appshell.boot.context import check_session

    root = app_dir("unboundapp")
    with booted(root, {"DATABASE_URL": sqlite_url}) as ctx:
        assert check_session(ctx) is None
        assert not ctx.session().in_transaction()  # the probe leaves nothing open
    # The provider's session is bound to a database that cannot be opened; its engine is fine.
    env = {"DATABASE_URL": sqlite_url, "OTHER_URL": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"}
    with booted(root, env, app="unboundapp.elsewhere:context") as ctx:
        assert check_session(ctx) == "OperationalError: (sqlite3.OperationalError) unable to open database file"


def test_doctor_rows_for_the_session_and_appshells_own_engine(app_dir: Apps, sqlite_url: str, tmp_path: Path) -> None:
    """doctor runs a real query through the session it will hand out (FAIL where the provider's session
    cannot reach its database, though the engine can), and WARNs where appshell made its own engine."""
    root = app_dir("unboundapp")

    def rows(result: Any) -> dict[str, tuple[str, str]]:
        return {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}

    found = rows(run(["doctor", "--json"], cwd=root, env={"DATABASE_URL": sqlite_url}))
    assert found["session"] == ("ok", "SELECT 1 through the session the shell hands out")
    env = {"DATABASE_URL": sqlite_url, "OTHER_URL": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"}
    broken = run(["--app", "unboundapp.elsewhere:context", "doctor", "--json"], cwd=root, env=env)
    assert broken.exit_code == 5
    status, detail = rows(broken)["session"]
    assert status == "FAIL" and detail.startswith(
        "OperationalError: (sqlite3.OperationalError) unable to open database file"
    ), detail
    own = rows(run(["doctor", "--json"], cwd=app_dir("ownengine"), env={"DATABASE_URL": sqlite_url}))
    assert own["engine"][0] == "WARN" and "--app ownengine.db:make_engine" in own["engine"][1]


def test_doctor_session_check_on_an_async_app(aiosqlite_app: tuple[Path, dict[str, str]]) -> None:
    from appshell.boot.context import check_session

    root, env = aiosqlite_app
    with booted(root, env, app="asyncapp.db") as ctx:
        assert ctx.async_session is not None
        assert check_session(ctx) is None


# --- what a provider gives -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["dbinterface.containers:get_database", "dbinterface.container:database"])
def test_an_object_holding_the_engine_and_session_factory_is_used(app_dir: Apps, tmp_path: Path, spec: str) -> None:
    # The app reads its own DB_URL; DATABASE_URL, which appshell would make an engine of, names another file.
    root = app_dir("dbinterface")
    env = {"DB_URL": f"sqlite:///{tmp_path / 'app.db'}", "DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    code = (
        "session.add(Customer(name='Ada')); commit(); "
        "[count(Customer), engine.url.database.rsplit('/', 1)[-1], "
        "engine is session.get_bind(), 'create_database' in globals()]"
    )
    assert json_of(root, env, code, "--app", spec) == [1, "app.db", True, False]


@pytest.mark.parametrize(
    ("spec", "given"),
    [
        (
            "dbinterface.containers:get_settings",
            "--app dbinterface.containers:get_settings returned a dbinterface.containers.Settings",
        ),
        ("dbinterface.containers:nothing", "--app dbinterface.containers:nothing returned None"),
        ("dbinterface.containers:Settings.__doc__", "--app dbinterface.containers:Settings.__doc__ is a str"),
    ],
)
def test_a_provider_giving_nothing_usable_is_a_one_line_error(
    app_dir: Apps, sqlite_url: str, spec: str, given: str
) -> None:
    # DATABASE_URL is set: before, the provider's value was dropped and the shell quietly used it.
    result = run(
        ["--app", spec, "-c", "print('ran')"],
        cwd=app_dir("dbinterface"),
        env={"DB_URL": sqlite_url, "DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"appshell: error: {given}, in which appshell finds no engine, session, session factory, metadata or models — "
        "make it give a mapping ({'engine': …, 'session': …}), an Engine or AsyncEngine, a Session, scoped_session or "
        "sessionmaker (sync or async), a Flask app, or an object whose attributes hold an engine or session factory\n"
    )


def test_an_object_holding_two_engines_is_an_error_naming_both(app_dir: Apps, tmp_path: Path) -> None:
    env = {"DB_URL": f"sqlite:///{tmp_path / 'w.db'}", "READER_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = run(["--app", "dbinterface.containers:replicated", "-c", "1"], cwd=app_dir("dbinterface"), env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "appshell: error: --app dbinterface.containers:replicated "
        "returned a dbinterface.containers.Replicated holding 2 engines: "
        f"'writer' (sqlite:///{tmp_path / 'w.db'}), 'reader' (sqlite:///{tmp_path / 'r.db'}) — "
        "return a mapping from --app that names the one the shell should use: {'engine': …, 'session': …}\n"
    )


def test_an_object_holding_two_session_factories_is_an_error_naming_both(app_dir: Apps, sqlite_url: str) -> None:
    result = run(
        ["--app", "dbinterface.containers:two_factories", "-c", "1"],
        cwd=app_dir("dbinterface"),
        env={"DB_URL": sqlite_url},
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "appshell: error: --app dbinterface.containers:two_factories "
        "returned a dbinterface.containers.TwoFactories holding "
        "2 session factories: '_sessions' (sessionmaker), '_batch_sessions' (sessionmaker) — "
        "return a mapping from --app that names the one the shell should use: {'engine': …, 'session': …}\n"
    )


# --- appshell's own engine beside the app's ----------------------------------------------------------

CASCADE = (
    "metadata.create_all(engine); session.add(Shelf(id=1, label='top')); session.flush(); "
    "session.add(Jar(shelf_id=1)); commit(); "
    "sql('DELETE FROM shelves'); commit(); [sql('PRAGMA foreign_keys')[0][0], count(Jar)]"
)

FACTORY_NOTE = (
    "made by appshell from DATABASE_URL, but the app makes its own "
    "(ownengine.db:make_engine(), which adds a 'connect' listener): "
    "the shell's connections may differ from the web process's — pass --app ownengine.db:make_engine to use it"
)


def test_appshells_own_engine_beside_the_apps_factory_is_named(app_dir: Apps, sqlite_url: str) -> None:
    from appshell.boot.engine import own_engine_note

    root = app_dir("ownengine")  # models = ["ownengine.models"]; the app's engine comes from ownengine.db:make_engine()
    env = {"DATABASE_URL": sqlite_url}
    # What the difference costs: appshell's engine has no foreign
    # keys on, so the cascade the app relies on is skipped ...
    assert json_of(root, env, CASCADE) == [0, 1]
    with booted(root, env) as ctx:
        assert own_engine_note(ctx) == FACTORY_NOTE
    # ... and the --app the note names gives the web process's connections: the jar goes with its shelf.
    fresh = {"DATABASE_URL": sqlite_url.replace("test.db", "fresh.db")}
    assert json_of(root, fresh, CASCADE, "--app", "ownengine.db:make_engine") == [1, 0]
    with booted(root, fresh, app="ownengine.db:make_engine") as ctx:
        assert own_engine_note(ctx) is None


def test_a_module_level_engine_of_the_app_is_named_with_its_listener(app_dir: Apps, sqlite_url: str) -> None:
    from appshell.boot.engine import own_engine_note

    root = app_dir("ownengine")
    with booted(root, {"DATABASE_URL": sqlite_url}, models=["ownengine.views"], database_url=sqlite_url) as ctx:
        assert own_engine_note(ctx) == (
            "made by appshell from --database-url, but the app makes its own (ownengine.web.engine, "
            "with connect listener ownengine.db.foreign_keys_on; ownengine.db:make_engine(), "
            "which adds a 'connect' listener): the shell's connections "
            "may differ from the web process's — pass --app ownengine.web to use it"
        )
    with booted(root, {"DATABASE_URL": sqlite_url}, app="ownengine.web") as ctx:
        assert own_engine_note(ctx) is None


def test_an_app_without_an_engine_of_its_own_gets_no_note(app_dir: Apps, sqlite_url: str) -> None:
    from appshell.boot.engine import own_engine_note

    with booted(app_dir("plainapp"), {"DATABASE_URL": sqlite_url}) as ctx:
        assert ctx.made_engine == "DATABASE_URL"
        assert own_engine_note(ctx) is None


@pytest.mark.subprocess
def test_the_banner_says_so(app_dir: Apps, sqlite_url: str) -> None:
    from support.terminal import end_input, spawn_shell

    child = spawn_shell(app_dir("ownengine"), "--shell", "python", env={"DATABASE_URL": sqlite_url})
    child.expect(">>> ")
    banner = child.before.replace("\r\n", "\n")
    end_input(child)
    lines = banner.splitlines()
    database = next(i for i, line in enumerate(lines) if line.startswith("  database  "))
    assert lines[database + 1] == f"  engine    {FACTORY_NOTE}"
