from sqlalchemy.orm import Mapped, mapped_column

from collide import Base


class Invoice(Base):
    __tablename__ = "billing_invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
