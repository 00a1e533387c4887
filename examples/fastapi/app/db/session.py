"""The async engine and session factory, and the `get_db` dependency the routes take."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import settings

engine = create_async_engine(settings.database_url, echo=settings.echo_sql)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_db() -> AsyncIterator[AsyncSession]:
    """A session per request: `db: AsyncSession = Depends(get_db)`."""
    async with SessionLocal() as session:
        yield session
