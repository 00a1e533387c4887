"""A read-only database role (issue 11 item 3): what the operator cannot switch off, proved by doctor."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.apps import library_on
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

# Past every refusal appshell makes: the raw DBAPI connection, session characteristics switched back.
PG_RAW_WRITE = (
    "raw = session.connection().connection.dbapi_connection\n"
    "raw.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE'); raw.commit()\n"
    "raw.execute('update books set year = 0'); raw.commit()"
)
MARIADB_RAW_WRITE = (
    "raw = session.connection().connection.dbapi_connection\n"
    "cur = raw.cursor(); cur.execute('SET SESSION TRANSACTION READ WRITE'); raw.rollback()\n"
    "cur.execute('update books set year = 0'); raw.commit()"
)
PROFILE = '[database]\nread_only = true\nread_only_url_env = "DATABASE_URL_READONLY"\n'


def _profile(root: Path) -> None:
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text(PROFILE)


def test_postgresql_read_only_role_holds_past_every_switch(
    app_dir: Callable[[str], Path], pg_url: str, pg_role: str
) -> None:
    root, env = library_on(app_dir, pg_url)
    _profile(root)
    env_ro = {**env, "DATABASE_URL_READONLY": pg_role}
    who = run(["-c", "print(sql('select current_user')[0][0], count(Book))"], cwd=root, env=env_ro)
    assert who.exit_code == 0 and who.stdout.split() == [pg_role.split("//")[1].split("@")[0], "2"], who.output
    result = run(["-c", PG_RAW_WRITE], cwd=root, env=env_ro)
    assert result.exit_code == 1 and "permission denied" in result.stderr, result.output
    assert run(["--write", "-c", "print(count(Book, year=0))"], cwd=root, env=env).stdout.strip() == "0"


def test_doctor_proves_the_role_cannot_write(app_dir: Callable[[str], Path], pg_url: str, pg_role: str) -> None:
    root, env = library_on(app_dir, pg_url)
    _profile(root)
    good = run(["doctor"], cwd=root, env={**env, "DATABASE_URL_READONLY": pg_role})
    assert "read-only role" in good.stdout and "cannot write" in good.stdout, good.output
    bad = run(["doctor"], cwd=root, env={**env, "DATABASE_URL_READONLY": pg_url})  # the owner: it can write
    assert bad.exit_code == 5 and "can write" in bad.stdout, bad.output


def test_read_only_role_variable_named_but_unset(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("plainapp")
    _profile(root)
    result = run(["-c", "1"], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 2
    assert "DATABASE_URL_READONLY is not set" in result.stderr and "SELECT rights only" in result.stderr


@pytest.fixture
def mariadb_role(mariadb_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, make_url, text

    database = make_url(mariadb_url).database
    user = f"ro_{uuid.uuid4().hex[:8]}"
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT ON {database}.* TO '{user}'@'%'"))
    try:
        yield make_url(mariadb_url).set(username=user).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
        engine.dispose()


def test_mariadb_read_only_role(app_dir: Callable[[str], Path], mariadb_url: str, mariadb_role: str) -> None:
    root, env = library_on(app_dir, mariadb_url)
    _profile(root)
    env_ro = {**env, "DATABASE_URL_READONLY": mariadb_role}
    result = run(["-c", MARIADB_RAW_WRITE], cwd=root, env=env_ro)
    assert result.exit_code == 1 and "denied" in result.stderr.lower(), result.output
    assert run(["--write", "-c", "print(count(Book, year=0))"], cwd=root, env=env).stdout.strip() == "0"
    good = run(["doctor"], cwd=root, env=env_ro)
    assert "cannot write" in good.stdout, good.output


# -- an async app: the role's URL may name asyncpg -----------------------------------


@pytest.fixture
def asyncpg_role(asyncpg_app: tuple[Path, dict[str, str]]) -> Iterator[tuple[Path, dict[str, str], str]]:
    """tests/apps/asyncapp on asyncpg, and the URL (asyncpg's) of a role with SELECT rights only on its tables."""
    from sqlalchemy import create_engine, make_url, text

    root, env = asyncpg_app
    asyncpg_url = env["DATABASE_URL"]
    role = f"ro_{uuid.uuid4().hex[:8]}"
    engine = create_engine(make_url(asyncpg_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        yield root, env, make_url(asyncpg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


def test_doctor_proves_an_asyncpg_role_cannot_write(asyncpg_role: tuple[Path, dict[str, str], str]) -> None:
    root, env, role_url = asyncpg_role
    _profile(root)
    good = run(["doctor", "--app", "asyncapp.db"], cwd=root, env={**env, "DATABASE_URL_READONLY": role_url})
    assert "read-only role" in good.stdout and "cannot write" in good.stdout, good.output  # not MissingGreenlet
    bad = run(["doctor", "--app", "asyncapp.db"], cwd=root, env={**env, "DATABASE_URL_READONLY": env["DATABASE_URL"]})
    assert bad.exit_code == 5 and "can write" in bad.stdout, bad.output


ASYNC_RAW_WRITE = (
    "raw = (await (await session.connection()).get_raw_connection()).driver_connection\n"
    "await raw.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE')\n"
    "await raw.execute('commit'); await raw.execute(\"insert into books (title) values ('raw')\")\n"
)


def test_an_async_session_logs_in_as_an_asyncpg_role(asyncpg_role: tuple[Path, dict[str, str], str]) -> None:
    from sqlalchemy import make_url

    root, env, role_url = asyncpg_role
    _profile(root)
    env_ro = {**env, "DATABASE_URL_READONLY": role_url}
    who = run(
        [
            "--app",
            "asyncapp.db",
            "-c",
            "from sqlalchemy import text\nprint(await session.scalar(text('select current_user')))",
        ],
        cwd=root,
        env=env_ro,
    )
    assert who.exit_code == 0 and who.stdout.strip() == make_url(role_url).username, who.output
    result = run(
        ["--app", "asyncapp.db", "-c", ASYNC_RAW_WRITE], cwd=root, env=env_ro
    )  # past every refusal of appshell's
    assert result.exit_code == 1 and "permission denied" in result.stderr, result.output
    titles = run(
        ["--app", "asyncapp.db", "--write", "-c", "print(sorted(b.title for b in where(Book)))"], cwd=root, env=env
    )
    assert titles.stdout.strip() == "['Dune', 'Emma']", titles.output


@pytest.mark.parametrize(
    "profile,environ,level",
    [
        ("", {}, None),
        ("[database]\nread_only = true\n", {}, "guarded"),
        (PROFILE, {"DATABASE_URL_READONLY": "postgresql://ro@localhost/x"}, "enforced"),
    ],
    ids=["read-write", "a session setting", "a read-only role"],
)
def test_read_only_is_labelled_for_what_it_is(
    app_dir: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    profile: str,
    environ: dict[str, str],
    level: str | None,
) -> None:
    """Guarded (a setting appshell re-checks, an operator's SQL could lift) or enforced (a role): issue 21 item 3."""
    from appshell.config.settings import resolve
    from appshell.console.banner import _read_only_label
    from appshell.safety.readonly_role import read_only_level

    root = app_dir("plainapp")
    if profile:
        _profile(root)
        (root / "profiles" / "development.toml").write_text(profile)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)  # read_only_url() reads the process's environment, as the session does
    settings = resolve({}, environ={"DATABASE_URL": "sqlite://", **environ}, cwd=root)
    assert read_only_level(settings) == level
    assert (
        _read_only_label(settings)
        == {
            None: "read-write",
            "guarded": "READ-ONLY (guarded: a session setting, re-checked)",
            "enforced": "READ-ONLY (enforced: a read-only database role)",
        }[level]
    )


# -- doctor says which level a session's read-only has (issue 21 item 3) ---------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_doctor_labels_read_only_and_warns_where_a_read_only_profile_is_only_guarded(
    kind: str, library_of: Callable[[str], tuple[Path, dict[str, str]]]
) -> None:
    import json

    root, env = library_of(kind)
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text(
        "[database]\nread_only = true\n"
    )  # read-only by profile, no role

    def rows(args: list[str]) -> dict[str, tuple[str, str]]:
        result = run([*args, "doctor", "--json"], cwd=root, env=env)
        return {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}

    found = rows([])
    assert found["read-only"][0] == "ok", found  # the setting is in force (MariaDB: @@tx_read_only, which 10.11 has)
    status, detail = found["read-only level"]
    assert status == "WARN" and detail.startswith("guarded:") and "database.read_only_url_env" in detail
    (root / "profiles" / "development.toml").write_text("")
    status, detail = rows(["--read-only"])["read-only level"]
    assert status == "info" and detail.startswith("guarded:")  # asked for by a flag: said, not warned about


def test_doctor_says_a_role_is_enforced(app_dir: Callable[[str], Path], pg_url: str, pg_role: str) -> None:
    import json

    root, env = library_on(app_dir, pg_url)
    _profile(root)
    result = run(["doctor", "--json"], cwd=root, env={**env, "DATABASE_URL_READONLY": pg_role})
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}
    assert checks["read-only level"][0] == "ok" and checks["read-only level"][1].startswith("enforced:"), checks
