from sqlalchemy.orm import Mapped, mapped_column

from lazymodels.models.base import Base


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    cents: Mapped[int]
