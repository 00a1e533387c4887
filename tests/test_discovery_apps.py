"""Issue 20 item 6: discovery of real third-party apps — lazily exported models, an unbound session
factory, a provider's unusable return value, and an app that makes its own engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/conftest.py)

Apps = Callable[[str], Path]


def json_of(cwd: Path, env: dict[str, str], code: str, *args: str) -> object:
    result = run([*args, "--json", "-c", code], cwd=cwd, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- lazily exported models -------------------------------------------------------------------

LAZY_MODELS = ["Category", "Order", "OrderLine", "Product", "User"]


def test_models_exported_lazily_through_all_are_found(app_dir: Apps, db_url: str) -> None:
    root = app_dir("lazymodels")  # models = ["lazymodels.models"]: only User is imported eagerly
    code = "metadata.create_all(engine); session.add(Category(name='books')); commit(); [sorted(k for k, v in globals().items() if hasattr(v, '__table__')), count(Category), sorted(metadata.tables)]"
    result = run(["--json", "-c", code], cwd=root, env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [LAZY_MODELS, 1, ["categories", "order_lines", "orders", "products", "users"]]
    # Refund is listed in __all__ and defined nowhere: one warning line, the session still opens.
    assert result.stderr.count("appshell: warning:") == 1
    assert "appshell: warning: lazymodels.models.__all__ lists 1 name that it does not define: Refund — fix its __all__ or its __getattr__\n" in result.stderr


def test_a_crash_inside_a_lazy_export_shows_its_traceback(app_dir: Apps, sqlite_url: str) -> None:
    # An AttributeError raised inside the module that __getattr__ imports is the app's bug, not "not found".
    result = run(["--models", "lazymodels.crashing", "-c", "1"], cwd=app_dir("lazymodels"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 1, result.output
    assert "Traceback" in result.stderr and "billing.py" in result.stderr and "missing_setting" in result.stderr
    assert result.stderr.endswith(
        "appshell: error: importing 'lazymodels.crashing.Invoice' (listed in its __all__) failed (the traceback above is from the app's own code)\n"
    )
