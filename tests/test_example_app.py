"""The example shop: its web process and appshell share one config and one database."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from support.harness import run
from support.processes import shop_web

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def test_web_process_and_admin_process_see_the_same_data(shop: Path) -> None:
    with shop_web(shop) as port:
        change = run(["-c", "o = find(Order, 50); o.status = 'refunded'; commit()"], cwd=shop)
        assert change.exit_code == 0, change.output
        orders = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/orders", timeout=5).read())
        assert orders[0]["id"] == 50 and orders[0]["status"] == "refunded"
        shown = run(["--json", "-c", "str(find(Order, 50).total)"], cwd=shop)
        assert json.loads(shown.stdout) == orders[0]["total"]


def test_demo_profile_override_keeps_shipped_values(shop: Path) -> None:
    result = run(
        [
            "--profile",
            "production",
            "--reason",
            "test",
            "--json",
            "-c",
            "[settings.profile, settings.read_only, str(Decimal('1.5'))]",
        ],
        cwd=shop,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["production", True, "1.5"]


def test_profiles_command_lists_effective_settings(shop: Path) -> None:
    result = run(["profiles"], cwd=shop)
    assert result.exit_code == 0
    assert "production — shop production" in result.stdout
    # Column widths follow the longest key: match the cells, not the padding.
    assert re.search(r"│ shell\.prompt +│ shop PRODUCTION +│", result.stdout)
    assert re.search(r"│ database\.read_only +│ True +│", result.stdout)
