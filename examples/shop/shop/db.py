"""The shop's engine and session factory, shared by the web process and appshell."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from shop import config

if config.DATABASE_URL.startswith("sqlite:///"):
    Path(config.DATABASE_URL.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

engine = create_engine(config.DATABASE_URL)
SessionLocal = sessionmaker(engine)
