"""Models exported lazily, as large projects do to keep `import lazymodels.models` cheap (PEP 562).

Only `Base` and `User` are imported eagerly; the rest load on first access through `__getattr__`.
`Refund` is listed in `__all__` but defined nowhere (a stale entry appshell warns about).
"""

from importlib import import_module
from typing import Any

from lazymodels.models.base import Base
from lazymodels.models.user import User

_LAZY = {
    "Order": "lazymodels.models.order",
    "OrderLine": "lazymodels.models.order",
    "Product": "lazymodels.models.catalog",
    "Category": "lazymodels.models.catalog",
}

__all__ = ["Base", "User", "Order", "OrderLine", "Product", "Category", "Refund"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
