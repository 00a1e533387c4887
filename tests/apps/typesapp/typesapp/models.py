"""Models whose database types, constraints and keys describe(), find() and repr must get right."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, Enum, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Status(enum.Enum):
    new = "new"
    paid = "paid"


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = deferred(mapped_column(Text))
    orders: Mapped[list[Purchase]] = relationship(back_populates="customer")


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (
        Index("ix_purchases_status_placed", "status", "placed_at"),
        UniqueConstraint("token", name="uq_purchases_token"),
        CheckConstraint("price >= 0", name="ck_purchases_price"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[Status] = mapped_column(Enum(Status, name="purchase_status"))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    customer: Mapped[Customer] = relationship(back_populates="orders")


class Membership(Base):
    __tablename__ = "memberships"
    group_id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class Labelled(Base):
    __tablename__ = "labelled"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20))

    def __repr__(self) -> str:
        return f"Labelled#{self.id}"
