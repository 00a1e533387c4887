"""Providers an async app may hand --app: every shape FastAPI-style apps have (tests/test_async_boot.py)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker, create_async_engine

from asyncapp.db import SessionLocal, engine

TEARDOWN = Path(os.environ.get("ASYNCAPP_TEARDOWN", "teardown.txt"))


def mapping() -> dict[str, Any]:
    """{"engine": AsyncEngine} (the issue's TypeError)."""
    return {"engine": engine, "greeting": "hello"}


async def get_db() -> AsyncIterator[AsyncSession]:
    """A FastAPI dependency: its code after `yield` is the teardown, awaited at the end."""
    async with SessionLocal() as session:
        yield session
    TEARDOWN.write_text("get_db closed\n")


@asynccontextmanager
async def lifespan() -> AsyncIterator[dict[str, Any]]:
    yield {"engine": engine, "sessionmaker": SessionLocal}
    TEARDOWN.write_text("lifespan closed\n")


async def make() -> dict[str, Any]:
    """A coroutine: awaited."""
    return {"session": SessionLocal(), "made": True}


def scoped() -> dict[str, Any]:
    """An async_scoped_session (keyed by task): the shell keeps one session of its factory's."""
    from asyncio import current_task

    own = create_async_engine(os.environ["DATABASE_URL"])
    return {"session": async_scoped_session(async_sessionmaker(own), scopefunc=current_task)}
