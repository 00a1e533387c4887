"""Providers that discovery must get right: no marker file (the cwd is the project)."""

import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from discovery.models import Base


def _engine(url=None):
    engine = create_engine(url or os.environ["DATABASE_URL"])
    Base.metadata.create_all(engine)
    return engine


def two_engines():
    return {"primary": _engine(), "reporting": _engine(os.environ["REPORTING_URL"])}


def two_engines_one_named():
    return {"engine": _engine(), "reporting": _engine(os.environ["REPORTING_URL"])}


def just_engine():
    return _engine()


def just_sessionmaker():
    return sessionmaker(_engine())


def no_models():
    return {"engine": create_engine(os.environ["DATABASE_URL"])}
