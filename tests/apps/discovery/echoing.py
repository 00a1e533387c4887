"""An app that logs every SQL statement to stdout (SQLAlchemy's echo=True)."""

import os

from sqlalchemy import create_engine

from discovery.models import Base, Probe  # noqa: F401

engine = create_engine(os.environ["DATABASE_URL"], echo=True)
