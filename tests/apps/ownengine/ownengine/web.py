"""The web process's module: its engine made at import, from the factory (listener included)."""

from ownengine.db import make_engine
from ownengine.models import Jar, Shelf  # noqa: F401

engine = make_engine()
