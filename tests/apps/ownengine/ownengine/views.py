"""Models that a --models module re-exports from a module that also holds the app's engine."""

from ownengine.web import Jar, Shelf  # noqa: F401
