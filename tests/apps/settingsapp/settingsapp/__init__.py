"""An app whose own config is a pydantic-settings object named `settings`."""

from pydantic_settings import BaseSettings
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class AppSettings(BaseSettings):
    database_url: str
    shop_currency: str = "EUR"


settings = AppSettings()
engine = create_engine(settings.database_url)


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
