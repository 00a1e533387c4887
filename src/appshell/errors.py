"""One error hierarchy; each error carries its exit code (docs/design.md §7)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AppshellError",
    "UsageError",
    "ConfigError",
    "AppNotFound",
    "DatabaseUnavailable",
    "AuditFailure",
    "SandboxBroken",
    "ReadOnlyLifted",
    "Refused",
    "SandboxRefused",
    "connect_reason",
    "EXIT_OK",
    "EXIT_USER_ERROR",
    "EXIT_USAGE",
    "EXIT_AUDIT",
    "EXIT_INTERRUPTED",
    "did_you_mean",
]

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_AUDIT = 3
EXIT_INTERRUPTED = 130


class AppshellError(Exception):
    """A failure the user can fix: shown as one line, never with a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def format(self) -> str:
        return f"appshell: error: {self.what} — {self.fix}"


class UsageError(AppshellError):
    """Bad command line."""


class ConfigError(AppshellError):
    """Bad or missing configuration: settings, profiles, TOML, .env."""


class AppNotFound(AppshellError):
    """The named app or models module does not exist (as opposed to crashing)."""


class DatabaseUnavailable(AppshellError):
    """The database cannot be reached or its driver is missing."""


class AuditFailure(AppshellError):
    """A required audit sink cannot be written: appshell fails closed."""

    exit_code = EXIT_AUDIT


class SandboxBroken(AppshellError):
    """The sandbox's outer transaction ended: changes may have been committed; the session stops."""

    exit_code = EXIT_AUDIT

    def format(self) -> str:
        return f"appshell: error: SANDBOX BROKEN — {self.what} — {self.fix}"


class ReadOnlyLifted(SandboxBroken):
    """A guarded read-only session found its read-only setting switched off: the session stops (exit 3).

    A SandboxBroken, so that every shell and runner that stops the session for a broken sandbox stops it for
    this too; appshell refuses every further statement of the session in any case."""

    def format(self) -> str:
        return f"appshell: error: READ-ONLY LIFTED — {self.what} — {self.fix}"


class Refused(RuntimeError):
    """appshell refused a statement inside the user's code (read-only, destructive, sandbox).

    Not an AppshellError: it is raised in the middle of the user's program, which
    may catch it; shells and program.py print it as one line, without SQLAlchemy's frames.
    """

    def format(self) -> str:
        return f"{type(self).__name__}: {self}"


class SandboxRefused(Refused):
    """A statement that would end or change the sandbox's transaction; raised in the user's code, not run.

    Here, not in appshell.safety.sandbox, so that the connection setup (appshell.safety.database) can raise it
    without importing the sandbox; the sandbox re-exports it."""


class LexingRefused(Refused):
    """A statement that would change how the database reads SQL (quotes, escapes, encoding), in a session whose
    safety reads SQL with a parser: refused, since the parser would read the next statements differently."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest choice, as click says it; empty when none is near."""
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def connect_reason(exc: BaseException) -> str:
    """Why a connect failed, in one line: the driver's own message (SQLAlchemy's wrapper left out),
    or its type where it has none."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
