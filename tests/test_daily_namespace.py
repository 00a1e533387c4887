"""Issue 13: the query vocabulary, the app's own settings, the readable repr, SQLModel's session."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run

from appshell.console.vocabulary import ORM_NAMES, SQLALCHEMY_NAMES, STDLIB_NAMES

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

# The names as appshell declares them once (console/vocabulary.py); docs/usage.md's table must say the same.
VOCABULARY = [*SQLALCHEMY_NAMES, *ORM_NAMES, *STDLIB_NAMES]


def test_the_docs_table_lists_the_vocabulary() -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    table = doc.split("## The query vocabulary", 1)[1].split("```", 1)[0]
    rows = {
        line.split("|")[1].strip(): re.findall(r"`(\w+)`", re.sub(r"\(from [^)]*\)", "", line.split("|")[2]))
        for line in table.splitlines()
        if line.startswith("| `") or line.startswith("| the")
    }
    assert rows == {
        "`sqlalchemy`": list(SQLALCHEMY_NAMES),
        "`sqlalchemy.orm`": list(ORM_NAMES),
        "the standard library": list(STDLIB_NAMES),
    }


def json_of(cwd: Path, env: dict[str, str], code: str, *args: str) -> object:
    result = run([*args, "--json", "-c", code], cwd=cwd, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- item 2: vocabulary -------------------------------------------------------------------


def test_vocabulary_is_loaded_and_usable(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    code = textwrap.dedent(
        f"""
        found = [n for n in {VOCABULARY!r} if n in globals()]
        q = select(Book.title).where(and_(Book.year > 1900, not_(Book.title == 'x'))).options()\
.order_by(case((Book.year > 1970, 1), else_=0))
        b = session.scalars(select(Book).options(joinedload(Book.author).selectinload(Author.books)).limit(1)).first()
        A = aliased(Author)
        print(found == {VOCABULARY!r}, [r[0] for r in session.execute(q)], b.author.name, \
session.scalar(select(func.count()).select_from(A)),
              session.scalar(select(exists().where(Book.year > cast(literal('1960'), Book.year.type)))),
              date(2024, 1, 2) + timedelta(days=1), \
datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat(), Decimal('1.50') * 2,
              isinstance(uuid.uuid4(), uuid.UUID), session.execute(text('select 1')).scalar())
    """
    )
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.split(" ", 1)[0] == "True"
    assert (
        "['Dune', 'Children of Dune'] Herbert 1 True 2024-01-03 2024-01-01T00:00:00+00:00 3.00 True 1" in result.stdout
    )


def test_vocabulary_never_shadows_the_apps_names_and_says_so_once(
    app_dir: Callable[[str], Path], sqlite_url: str
) -> None:
    root = app_dir("discovery")
    result = run(
        ["--app", "clash:context", "--json", "-c", "[Decimal.__module__, text, select.__module__]"],
        cwd=root,
        env={"DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["clash", "the app's own text", "sqlalchemy.sql._selectable_constructors"]
    notes = [line for line in result.stderr.splitlines() if "vocabulary" in line]
    assert notes == [
        "appshell: warning: the app's own Decimal, text keep their names (the query vocabulary's are left out)"
    ]


def test_vocabulary_can_be_switched_off_in_the_profile(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text("[namespace]\nvocabulary = false\n")
    found = json_of(root, {"DATABASE_URL": sqlite_url}, f"[n for n in {VOCABULARY!r} if n in globals()]")
    assert found == []


def test_bad_vocabulary_value_names_the_key(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text('[namespace]\nvocabulary = "yes"\n')
    result = run(["-c", "1"], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 2
    assert "'namespace.vocabulary'" in result.stderr and "true or false" in result.stderr


# --- item 4: SQLModel ----------------------------------------------------------------------


def test_sqlmodel_session_exec_as_in_the_tutorial(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("sqlmodelapp")
    code = textwrap.dedent("""
        metadata.create_all(engine)
        session.add(Hero(name='Ada', power=9)); session.add(Hero(name='Bo', power=1)); commit()
        heroes = session.exec(select(Hero).where(Hero.power > 5)).all()
        print(type(session).__module__, [h.name for h in heroes], type(heroes[0]).__name__)
    """)
    result = run(["-c", code], cwd=root, env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["sqlmodel.orm.session", "['Ada']", "Hero"]


# --- item 5: settings ------------------------------------------------------------------------


def test_the_apps_own_pydantic_settings_keeps_its_name(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("settingsapp")
    env = {"DATABASE_URL": sqlite_url, "SHOP_CURRENCY": "SEK"}
    found = json_of(
        root,
        env,
        "[type(settings).__name__, settings.shop_currency, type(appshell_settings).__name__, appshell_settings['app']]",
    )
    assert found == ["AppSettings", "SEK", "SettingsView", "settingsapp"]


def test_appshell_settings_show_the_effective_value_and_its_true_source(
    app_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    root = app_dir("plainapp")
    (root / ".env").write_text(
        f"DATABASE_URL=sqlite:///{tmp_path / 'from-dotenv.db'}\nSHOP_REGION=eu\nSHOP_TIER=gold\n"
    )
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'from-env.db'}", "SHOP_REGION": "us"}
    # A wide "terminal", so that each setting stays on one line to be parsed (at 80 columns long paths wrap).
    result = run(
        ["-c", "print(repr(appshell_settings)); print(settings is appshell_settings)"],
        cwd=root,
        env={**env, "COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in line.strip("│").split("│")]
            for line in result.stdout.splitlines()
            if line.startswith("│")
        )
    }
    assert rows["SHOP_REGION"] == ["us", "env"]  # the environment won over .env: its value, its source
    assert rows["SHOP_TIER"] == ["gold", ".env"]
    assert rows["DATABASE_URL"] == [f"sqlite:///{tmp_path / 'from-env.db'}", "env"]
    assert rows["database_url"] == [f"sqlite:///{tmp_path / 'from-env.db'}", "env"]
    assert rows["project_root"] == [str(root), "found"]
    assert rows["profile"] == ["development", "default"]
    assert result.stdout.rstrip().endswith("True")  # no settings of the app's own: `settings` is appshell's view
    flagged = run(
        [
            "--database-url",
            f"sqlite:///{tmp_path / 'from-flag.db'}",
            "-c",
            "print(appshell_settings.source('DATABASE_URL'), appshell_settings['DATABASE_URL'])",
        ],
        cwd=root,
        env=env,
    )
    assert flagged.stdout.split() == ["flag", f"sqlite:///{tmp_path / 'from-flag.db'}"], flagged.output


# --- item 9: repr ----------------------------------------------------------------------------

REPR_PROGRAM = textwrap.dedent("""
    from sqlalchemy import event
    metadata.create_all(engine)
    c = Customer(email='a@x', name='Ann', notes='n' * 500)
    session.add(c); session.add(Labelled(label='x')); session.flush()
    session.add(Purchase(placed_at=datetime(2024, 1, 1, tzinfo=timezone.utc), \
status=__import__('typesapp.models').models.Status.paid, price=Decimal('1'), customer=c))
    commit()
    session.expunge_all()
    statements = []
    event.listen(engine, 'before_cursor_execute', lambda *a: statements.append(a[2]))
    fresh = session.scalars(select(Customer)).one()     # one SELECT; notes is deferred, orders a relationship
    before = len(statements)
    shown = [repr(fresh), repr(session.get(Labelled, 1)), repr(Membership(group_id=1, user_id=2, role='r'))]
    session.expire(fresh)
    shown.append(repr(fresh))                            # expired: the identity only, no refresh
    print(shown, len(statements) - before, 'notes' in fresh.__dict__, 'orders' in fresh.__dict__)
""")


def test_mapped_classes_get_a_repr_that_never_loads_anything(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("typesapp")
    result = run(["-c", REPR_PROGRAM], cwd=root, env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "[\"<Customer id=1 email='a@x' name='Ann'>\", 'Labelled#1', "
        "\"<Membership group_id=1 user_id=2 role='r'>\", '<Customer id=1>'] 1 False False"
    )  # the 1 statement is session.get(Labelled, 1): Labelled keeps its own __repr__


@pytest.mark.parametrize(
    ("value", "shown"),
    [("short", "'short'"), ("x" * 40, None), (3, "3"), (None, "None"), (True, "True"), (b"bytes", None), ([1], None)],
)
def test_repr_keeps_only_short_simple_values(value: object, shown: str | None) -> None:
    from appshell.console.reprs import _short

    assert _short(value) == shown


# --- the shells show it too (a real pty) ----------------------------------------------------


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_shells_show_the_repr_the_capped_table_and_know_the_vocabulary(
    app_dir: Callable[[str], Path], sqlite_url: str, shell: str
) -> None:
    import re

    from support.terminal import leave, spawn_shell

    root = app_dir("plainapp")
    setup = "metadata.create_all(engine); session.add_all([Author(name=f'A{i}') for i in range(25)]); commit()"
    assert run(["-c", setup], cwd=root, env={"DATABASE_URL": sqlite_url}).exit_code == 0
    child = spawn_shell(root, "--shell", shell, "-q", env={"DATABASE_URL": sqlite_url}, columns=160)
    child.sendline("find(Author, 3)")
    child.expect(re.escape("<Author id=3 name='A2'>"))
    child.sendline("where(Author)")
    child.expect(re.escape("(20 rows shown of 25; 5 more: where(…, limit=N) shows N"))
    child.sendline("print(session.scalar(select(func.count()).where(Author.name.like('A1%'))), Decimal('2.5') * 2)")
    child.expect("11 5.0")
    child.expect(r"\[dev\]|>>>|In \[")
    leave(child)
