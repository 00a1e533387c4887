"""The app's data access: async functions that take the request's AsyncSession."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Note, User


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    return await db.get(User, user_id)


async def get_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email))


async def create_user(db: AsyncSession, email: str, name: str) -> User:
    user = User(email=email, name=name)
    db.add(user)
    await db.commit()
    await db.refresh(user)
    return user


async def list_notes(db: AsyncSession, owner_id: int, *, done: bool | None = None, limit: int = 100) -> Sequence[Note]:
    query = select(Note).where(Note.owner_id == owner_id).order_by(Note.id).limit(limit)
    if done is not None:
        query = query.where(Note.done == done)
    return (await db.scalars(query)).all()


async def create_note(db: AsyncSession, owner_id: int, title: str, body: str = "") -> Note:
    note = Note(owner_id=owner_id, title=title, body=body)
    db.add(note)
    await db.commit()
    await db.refresh(note)
    return note


async def mark_done(db: AsyncSession, note_id: int) -> Note | None:
    note = await db.get(Note, note_id)
    if note is not None:
        note.done = True
        await db.commit()
    return note


async def open_counts(db: AsyncSession) -> dict[str, int]:
    """Each active user's email and how many notes they have not done."""
    query = (select(User.email, func.count(Note.id)).join(Note).where(User.is_active, Note.done.is_(False))
             .group_by(User.email).order_by(User.email))
    return {email: n for email, n in (await db.execute(query)).all()}
