"""The shop's config, read from the environment only (Twelve-Factor III).

The web process and appshell both import this module, so they cannot disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{_HERE / 'var' / 'shop.db'}"

DATABASE_URL = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "dev-only-secret")
CURRENCY = os.environ.get("SHOP_CURRENCY", "EUR")
PORT = int(os.environ.get("PORT", "8000"))
# The release this process runs, as the platform says (Heroku's SOURCE_VERSION and the like).
RELEASE = os.environ.get("SOURCE_VERSION") or os.environ.get("RELEASE") or "dev"
