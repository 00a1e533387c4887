"""A lazily exported model whose module crashes on import: the app's bug, shown with its traceback."""

from importlib import import_module
from typing import Any

from lazymodels.models.base import Base

__all__ = ["Base", "Invoice"]


def __getattr__(name: str) -> Any:
    if name == "Invoice":
        return import_module("lazymodels.billing").Invoice
    raise AttributeError(name)
