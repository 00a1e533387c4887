"""The app's settings (pydantic-settings): the environment first, then `.env`, then defaults.

The web process and appshell both import this module, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ROOT / ".env", extra="ignore")

    project_name: str = "Notes"
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'notes.db'}"
    secret_key: str = "dev-only-secret"
    echo_sql: bool = False


settings = Settings()
