"""What the API takes and returns (pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NoteIn(BaseModel):
    title: str
    body: str = ""


class NoteOut(NoteIn):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    done: bool


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
