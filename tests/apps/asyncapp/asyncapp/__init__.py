"""A small async SQLAlchemy app: an AsyncEngine and an async_sessionmaker, as FastAPI apps have them."""
