import os

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from asyncapp.models import Base, Book

engine = create_async_engine(os.environ["DATABASE_URL"])
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def add_book(session: AsyncSession, title: str) -> Book:
    book = Book(title=title)
    session.add(book)
    await session.flush()
    return book


__all__ = ["Base", "Book", "engine", "SessionLocal", "add_book"]
