"""A provider that names an engine and no models at all."""

import os

from sqlalchemy import create_engine


def context():
    return {"engine": create_engine(os.environ["DATABASE_URL"])}
