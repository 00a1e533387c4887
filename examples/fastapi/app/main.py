"""The web process: `uvicorn app.main:app` (the same settings, session and crud as appshell)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from app import crud
from app.core.config import settings
from app.db.session import get_db
from app.models import Note, User
from app.schemas import NoteIn, NoteOut, UserOut

app = FastAPI(title=settings.project_name)
Db = Annotated[AsyncSession, Depends(get_db)]


@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: int, db: Db) -> User:
    user = await crud.get_user(db, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="user not found")
    return user


@app.get("/users/{user_id}/notes", response_model=list[NoteOut])
async def read_notes(user_id: int, db: Db, done: bool | None = None) -> Sequence[Note]:
    return await crud.list_notes(db, user_id, done=done)


@app.post("/users/{user_id}/notes", response_model=NoteOut, status_code=201)
async def add_note(user_id: int, note: NoteIn, db: Db) -> Note:
    if await crud.get_user(db, user_id) is None:
        raise HTTPException(status_code=404, detail="user not found")
    return await crud.create_note(db, user_id, note.title, note.body)
