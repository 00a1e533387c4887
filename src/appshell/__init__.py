"""appshell: the one-off admin console for SQLAlchemy apps (Twelve-Factor XII)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
