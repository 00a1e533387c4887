"""`appshell audit serve`: the auditors' review web page (optional extra ``appshell[review]``)."""

from __future__ import annotations

from appshell.cli.review_web.cli import serve

__all__ = ["serve"]
