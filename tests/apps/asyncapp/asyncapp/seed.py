"""python -m asyncapp.seed: the tables and two books."""

import asyncio

from asyncapp.db import Base, Book, SessionLocal, engine


async def main() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with SessionLocal() as session:
        session.add_all([Book(title="Dune"), Book(title="Emma")])
        await session.commit()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
