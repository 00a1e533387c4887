"""Create the schema and a deterministic data set: ``python -m app.seed``."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app.db.base import Base
from app.db.session import SessionLocal, engine
from app.models import Note, User

NAMES = ["Ada", "Brian", "Chen", "Dana", "Emil"]


async def seed() -> bool:
    """Seed an empty database; returns False (and changes nothing) if it has users."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with SessionLocal() as db:
        if await db.scalar(select(func.count()).select_from(User)):
            return False
        for i, name in enumerate(NAMES, start=1):
            user = User(email=f"{name.lower()}@example.com", name=name)
            user.notes = [Note(title=f"{name}'s note {n}", done=n % 3 == 0) for n in range(1, 1 + i)]
            db.add(user)
        await db.commit()
    return True


async def main() -> None:
    try:
        print("seeded the notes database" if await seed() else "the notes database is already seeded")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
