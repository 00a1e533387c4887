"""An older idiom: __all__ names the package's submodules, for `from lazymodels.legacy import *`.
`archive` was deleted and its name left behind."""

__all__ = ["ledger", "archive"]
