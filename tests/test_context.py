"""Booting real apps of every supported kind, and the namespace they get."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

CORE = [
    "session",
    "engine",
    "metadata",
    "settings",
    "sql",
    "count",
    "find",
    "where",
    "first",
    "show",
    "describe",
    "explain",
    "commit",
    "rollback",
    "audit_log",
    "helpers",
    "unlock",
    "lock",
]


def names(cwd: Path, env: dict[str, str], *args: str) -> list[str]:
    result = run([*args, "--json", "-c", "sorted(k for k in globals() if not k.startswith('_'))"], cwd=cwd, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plain_declarative_app(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("plainapp")
    env = {"DATABASE_URL": db_url}
    found = names(root, env)
    assert {"Author", "Book", *CORE} <= set(found)
    code = textwrap.dedent("""
        metadata.create_all(engine)
        session.add(Book(title="Dune", year=1965, author=Author(name="Herbert")))
        commit()
        print(count(Book), count(Author, name="Herbert"), find(Book, 1).author.name, first(Book).title)
    """)
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1", "1", "Herbert", "Dune"]


def test_imperative_registry_app(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("registryapp")
    code = (
        "metadata.create_all(engine); w = Widget(); w.label = 'gear'; session.add(w); commit(); "
        "print(count(Widget), sorted(metadata.tables))"
    )
    result = run(["-c", code], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 ['widgets']"


def test_flask_sqlalchemy_factory_with_app_context(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("flaskapp")
    code = textwrap.dedent("""
        from flaskapp import app_name, db
        db.create_all()
        session.add(Gadget(name="lamp")); commit()
        print(app_name(), count(Gadget), session is db.session, engine.url.drivername)
    """)
    result = run(["-c", code], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["flaskapp", "1", "True", "sqlite"]
    assert {"Gadget", "app", "db"} <= set(names(root, {"DATABASE_URL": sqlite_url}))


def test_sqlmodel_app(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("sqlmodelapp")
    code = (
        "metadata.create_all(engine); session.add(Hero(name='Ada', power=9)); commit(); "
        "print(count(Hero, power=9), first(Hero).name)"
    )
    result = run(["-c", code], cwd=root, env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1", "Ada"]


def test_provider_mapping(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["-c", "print(greeting, count(Note))"], cwd=app_dir("provider"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "hello from provider 0"


def test_provider_generator_teardown_runs(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(
        ["--app", "provider:with_teardown", "-c", "print(count(Note))"],
        cwd=app_dir("provider"),
        env={"DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0"
    assert "provider teardown ran" in result.stderr


def test_name_collisions_are_qualified_with_one_warning(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("collide")
    result = run(
        ["--json", "-c", "sorted(k for k in globals() if 'Invoice' in k or k == 'Contact')"],
        cwd=root,
        env={"DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["Contact", "collide_billing_Invoice", "collide_crm_Invoice"]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "appshell: warning: 2 models are named Invoice: collide.billing.Invoice as collide_billing_Invoice, "
        "collide.crm.Invoice as collide_crm_Invoice"
    ]


def test_settings_are_masked(app_dir: Callable[[str], Path]) -> None:
    root = app_dir("plainapp")
    (root / ".env").write_text("SHOP_API_TOKEN=tok-123456\n")
    result = run(
        [
            "--database-url",
            f"sqlite:///{root / 'x.db'}",
            "-c",
            "print(repr(settings)); print(settings['SHOP_API_TOKEN'])",
        ],
        cwd=root,
    )
    assert result.exit_code == 0, result.output
    assert "tok-123456" not in result.stdout
    assert result.stdout.strip().endswith("***")
    assert "database_url" in result.stdout and "flag" in result.stdout


def test_profile_imports_and_helpers(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text(
        '[namespace]\nimports = ["from decimal import Decimal"]\nhelpers = ["plainapp.tools:shout"]\n'
    )
    (root / "plainapp" / "tools.py").write_text('def shout(s):\n    """Upper-case s."""\n    return s.upper()\n')
    result = run(["-c", "print(Decimal('1.5') * 2, shout('hi'))"], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3.0 HI"


def test_entry_point_helpers(app_dir: Callable[[str], Path], sqlite_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "acme_helpers-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-helpers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[appshell.helpers]\nrevenue = acme_helpers:revenue\n")
    (site / "acme_helpers.py").write_text('def revenue():\n    """Total revenue, from a plug-in."""\n    return 42\n')
    env = {"DATABASE_URL": sqlite_url, "PYTHONPATH": str(site)}
    root = app_dir("plainapp")
    result = run(["-c", "print(revenue()); helpers()"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "42"
    assert "revenue()" in result.stdout and "Total revenue, from a plug-in." in result.stdout


def test_helpers_listing_has_one_line_docs(shop: Path) -> None:
    result = run(["-c", "helpers()"], cwd=shop)
    for name in CORE[4:]:
        assert f"│ {name}(" in result.stdout, name
    assert "(15 rows)" in result.stdout and "│ echo_sql(on=True)" in result.stdout


def test_dotenv_feeds_the_app_config(shop: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    seed = run(
        ["--database-url", f"sqlite:///{other}", "-c", "metadata.create_all(engine); print(count(Customer))"], cwd=shop
    )
    assert seed.stdout.strip() == "0", seed.output
    (shop / ".env").write_text(f"DATABASE_URL=sqlite:///{other}\n")
    assert run(["-c", "print(count(Customer), engine.url.database)"], cwd=shop).stdout.split() == ["0", str(other)]
    # A real environment variable wins over .env.
    real = run(
        ["-c", "print(count(Customer))"], cwd=shop, env={"DATABASE_URL": f"sqlite:///{shop / 'var' / 'shop.db'}"}
    )
    assert real.stdout.strip() == "20"


def test_ipython_and_ptpython_not_imported_for_command(shop: Path) -> None:
    # A process: in this one, an earlier test on the same worker may have imported them already.
    result = run(
        [
            "-c",
            "import sys; print('IPython' in sys.modules, 'ptpython' in sys.modules, 'prompt_toolkit' in sys.modules)",
        ],
        cwd=shop,
        process=True,
    )
    assert result.stdout.split() == ["False", "False", "False"]
