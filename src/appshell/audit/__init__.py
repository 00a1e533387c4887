"""The audit log (docs/audit.md): write-ahead, hash-chained, crash-safe, fail-closed."""

from __future__ import annotations

from appshell.audit.auditor import Auditor, open_auditor
from appshell.audit.records import canonical, seal

__all__ = ["Auditor", "open_auditor", "canonical", "seal"]
