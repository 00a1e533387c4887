"""appshell's errors, all in this one module; each carries its exit code (docs/usage.md "Exit codes").

The hierarchy::

    Exception
    ├── AppshellError .............. one line, ``appshell: error: WHAT — HOW TO FIX``, no traceback
    │   ├── UsageError ............. bad command line                                    (2)
    │   ├── ConfigError ............ bad settings, profile, TOML, .env                   (2)
    │   ├── AppNotFound ............ the app or models module does not exist             (2)
    │   ├── DatabaseUnavailable .... the database cannot be reached                      (2)
    │   ├── AuditFailure ........... a required audit sink fails: fail closed            (3)
    │   │   └── SealRefused ........ the log or sealing state is not what a crash leaves (3)
    │   └── SandboxBroken .......... SANDBOX BROKEN: the outer transaction ended         (6)
    │       └── ReadOnlyLifted ..... READ-ONLY LIFTED: the guarded setting went off      (6)
    ├── AppCrashed ................. the app's own code raised while booting: its traceback (1)
    └── RuntimeError
        ├── SessionEnded ........... SQL from a thread left behind or a forked child: nobody records it
        └── Refused ................ raised inside the user's code, which may catch it; shown in one line
            ├── SandboxRefused ............... would end or change the sandbox's transaction
            ├── LexingRefused ................ would change how the database reads SQL
            ├── ReadOnlyError ................ a write in a read-only session
            ├── DestructiveStatementRefused .. an UPDATE/DELETE without WHERE, a DROP, … not confirmed
            ├── RawConnectionRefused ......... a DBAPI connect() outside SQLAlchemy
            ├── BytecodeRefused .............. a module whose byte code is not its source
            ├── HostRefused .................. a connection to a protected host while data is locked
            ├── UnlockRefused ................ unlock() without a reason worth recording
            └── LoopMisuse ................... sync IO where the session's loop cannot run it

A Refused raised and not caught ends a ``-c``/script/stdin program with exit 1 (the user's code
raised); at the prompt it is one line and the shell goes on. The modules that raise an error
(appshell.safety.guard, appshell.record.journal, …) import it from here and keep its name in
their ``__all__``. Errors that never leave appshell (a sink's FileChanged, verify's _Broken) stay
private to their modules.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AppshellError",
    "UsageError",
    "ConfigError",
    "AppNotFound",
    "DatabaseUnavailable",
    "AuditFailure",
    "SealRefused",
    "SandboxBroken",
    "ReadOnlyLifted",
    "AppCrashed",
    "SessionEnded",
    "Refused",
    "SandboxRefused",
    "LexingRefused",
    "ReadOnlyError",
    "DestructiveStatementRefused",
    "RawConnectionRefused",
    "BytecodeRefused",
    "HostRefused",
    "UnlockRefused",
    "LoopMisuse",
    "connect_reason",
    "EXIT_OK",
    "EXIT_USER_ERROR",
    "EXIT_USAGE",
    "EXIT_AUDIT",
    "EXIT_CHAIN_BROKEN",
    "EXIT_DOCTOR_FAILED",
    "EXIT_SANDBOX_BROKEN",
    "EXIT_INTERRUPTED",
    "EXIT_CODES",
    "did_you_mean",
]

# Each code means one thing. 0-3 and 130 are SPEC §7's; 4-6 are appshell's own: SPEC §8/§11 ask only for
# "non-zero" from doctor and verify, and §7's 3 is the audit failing closed, which a broken sandbox is not.
EXIT_OK = 0  # success
EXIT_USER_ERROR = 1  # the user's code raised (its traceback as Python prints it), or the app crashed while booting
EXIT_USAGE = 2  # usage or config error: one line `appshell: error: WHAT — HOW TO FIX`, no traceback
EXIT_AUDIT = 3  # audit failure: a required sink cannot be written, appshell fails closed
EXIT_CHAIN_BROKEN = 4  # `appshell audit verify` found the log broken: tampering, a gap, a forged or cut record
EXIT_DOCTOR_FAILED = 5  # `appshell doctor` found a failing check
EXIT_SANDBOX_BROKEN = (
    6  # SANDBOX BROKEN / READ-ONLY LIFTED: the database's own state says safety was lost; the session stops
)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C), as a shell reports SIGINT (128 + 2)

# code -> what it means: the docs table (docs/usage.md, "Exit codes") says exactly this (tests/test_exit_codes.py).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_USER_ERROR: (
        "your code raised (the traceback is printed as Python prints it), or the app's own code raised while booting"
    ),
    EXIT_USAGE: "usage or configuration error: one line, `appshell: error: WHAT — HOW TO FIX`",
    EXIT_AUDIT: "audit failure (fail-closed): the audit cannot be written, so nothing more runs",
    EXIT_CHAIN_BROKEN: (
        "`appshell audit verify` found the log broken: records altered, forged, reordered, missing or cut off"
    ),
    EXIT_DOCTOR_FAILED: "`appshell doctor` found a failing check (a FAIL row)",
    EXIT_SANDBOX_BROKEN: (
        "SANDBOX BROKEN or READ-ONLY LIFTED: the sandbox's transaction ended behind appshell's back, or a guarded "
        "read-only setting was switched off — changes may have been committed; the session stops"
    ),
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


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


class SealRefused(AuditFailure):
    """The log or the sealing state asks for what no crash leaves behind: appshell refuses to seal on it (exit 3)."""


class SandboxBroken(AppshellError):
    """The sandbox's outer transaction ended: changes may have been committed; the session stops (exit 6)."""

    exit_code = EXIT_SANDBOX_BROKEN

    def format(self) -> str:
        return f"appshell: error: SANDBOX BROKEN — {self.what} — {self.fix}"


class ReadOnlyLifted(SandboxBroken):
    """A guarded read-only session found its read-only setting switched off: the session stops (exit 6).

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


class ReadOnlyError(Refused):
    """The session is read-only; raised in the user's code."""


class DestructiveStatementRefused(Refused):
    """Raised in the user's code: the statement was not run."""


class RawConnectionRefused(Refused):
    """A DBAPI connect() outside SQLAlchemy, in a sandbox or read-only session: appshell could not cover it."""


class BytecodeRefused(Refused):
    """An operator module whose byte code is not its source (altered, stale) or has no source: not run.

    Not an ImportError: ``except ImportError`` fallbacks in the operator's code must not hide it."""


class HostRefused(Refused):
    """A connection to a protected host (``protect.hosts``) while protected data is locked."""

    def format(self) -> str:
        return f"appshell: refused: {self}"


class UnlockRefused(Refused):
    """unlock() was refused (no reason worth recording, an unknown column): nothing was unlocked."""


class LoopMisuse(Refused):
    """Sync IO asked for where the session's loop cannot run it: in a task the loop is running, or another thread."""


class SessionEnded(RuntimeError):
    """SQL from a thread the session left behind, or from a forked child: refused, nobody would record it."""


class AppCrashed(Exception):
    """The app's own code raised while booting: its traceback is shown (exit 1).

    Not an AppshellError: that is one line without a traceback, and this is the app's bug, shown whole."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, what: str, exc: BaseException) -> None:
        super().__init__(what)
        self.what = what
        self.exc = exc


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
