import os

from sqlalchemy.orm import Mapped, mapped_column

from lazymodels.models.base import Base

CURRENCY = os.environ.get("LAZYMODELS_CURRENCY") or os.environ.missing_setting  # the app's bug: an AttributeError


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
