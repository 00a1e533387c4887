"""A provider whose session is bound to another database than its engine: only a query through the
session shows it (doctor's session check)."""

import os

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from unboundapp.models import Base, Task  # noqa: F401


def context():
    engine = create_engine(os.environ["DATABASE_URL"])
    other = create_engine(os.environ["OTHER_URL"])
    return {"engine": engine, "session": Session(other)}
