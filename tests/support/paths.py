"""Where the repository, the fixture apps, the example shop and the `appshell` console script are."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["APPS", "APPSHELL", "ROOT", "SHOP"]

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
SHOP = ROOT / "examples" / "shop"
APPSHELL = str(Path(sys.executable).with_name("appshell"))
