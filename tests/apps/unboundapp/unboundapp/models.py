"""As Pyramid's SQLAlchemy scaffold has it: one scoped session for the whole app, bound at run time.

The web process's startup (`main` below) calls `DBSession.configure(bind=engine)`; imported by
itself, `DBSession` has no bind.
"""

from sqlalchemy import String, engine_from_config
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker

DBSession = scoped_session(sessionmaker())


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))


def main(settings: dict[str, str]) -> None:
    """The web process's startup: binds the session factory to the engine its config names."""
    DBSession.configure(bind=engine_from_config(settings, "sqlalchemy."))
