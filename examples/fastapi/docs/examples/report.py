"""A report written for the app's own process: it runs its own event loop with asyncio.run()."""

import asyncio

from app import crud
from app.db.session import SessionLocal


async def main() -> dict[str, int]:
    async with SessionLocal() as db:
        return await crud.open_counts(db)


for email, n in asyncio.run(main()).items():
    print(f"{email:<20} {n}")
