"""Interactive shells: small runners behind one interface (docs/design.md §1, §3).

Each runner takes a :class:`ShellSession` and returns when the operator leaves;
each reports every input through the session's journal, so the audit and the
safety checks are written once, in the journal, not once per shell.
IPython and ptpython are imported only when their runner starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appshell.errors import ConfigError, SandboxBroken, did_you_mean
from appshell.record.journal import file_info

if TYPE_CHECKING:
    from appshell.console.banner import Look
    from appshell.console.history import History
    from appshell.console.interrupted import Interrupted
    from appshell.console.refusals import Refusals
    from appshell.record.journal import Journal

__all__ = [
    "ShellSession",
    "Runner",
    "RUNNERS",
    "check_shell_name",
    "pick_shell",
    "get_runner",
    "run_startup_file",
    "startup_file",
    "hold_safe_completion",
    "refusal_line",
    "BrokenSandbox",
]


@dataclass
class ShellSession:
    namespace: dict[str, Any]
    banner: str
    look: Look
    journal: Journal
    history: History = field(default_factory=lambda: _no_history())
    refusals: Refusals = field(default_factory=lambda: _no_refusals())
    interrupted: Interrupted | None = None  # Ctrl-C during a database statement: its transaction rolled back, recorded


def _no_history() -> History:
    from appshell.console.history import History  # the shells' module, not -c's start-up, pays for it

    return History(None)


def _no_refusals() -> Refusals:
    from appshell.console.refusals import Refusals

    return Refusals()


Runner = Callable[[ShellSession], None]


def startup_file() -> dict[str, str] | None:
    """$PYTHONSTARTUP's path, sha256 and text, if it names a file."""
    path = os.environ.get("PYTHONSTARTUP")
    return file_info(path) if path and os.path.isfile(path) else None


def run_startup_file(shell: ShellSession) -> None:
    """Run $PYTHONSTARTUP as the interactive ``python`` does, journaled with its sha256 and text.

    IPython runs the file itself; its runner only records it (see ipython.py).
    """
    info = startup_file()
    if info is None:
        return
    path = os.environ["PYTHONSTARTUP"]  # tracebacks name the file as the user set it
    try:
        with shell.journal.statement(info["text"], kind="startup", files=[info]):
            exec(compile(info["text"], path, "exec"), shell.namespace)
    except Exception as exc:  # like python: a broken startup file is reported, the shell still opens
        line = refusal_line(exc, shell.refusals)  # a refusal: one line, as at the prompt
        if line is not None:
            print(line, file=sys.stderr)
        else:
            traceback.print_exc()


def refusal_line(exc: BaseException, refusals: Refusals | None = None) -> str | None:
    """The one line that stands for an audit failure or a safety refusal (read-only, destructive,
    sandbox), found anywhere in *exc*'s chain; None for the user's own errors, whose traceback the
    shell shows as usual (and for every refusal, with --traceback)."""
    from appshell.console.refusals import Refusals

    return (refusals or Refusals()).line(exc)


class BrokenSandbox:
    """How every shell ends a broken sandbox (SandboxBroken, ReadOnlyLifted): the same way in each.

    The sandbox or the read-only guard said it in one line when it found the break; the shell says
    nothing more (no traceback, no refusal line), keeps the first error (:meth:`keep`), leaves its
    loop, and its runner raises it (:meth:`end`) — cli/main.py turns that into EXIT_SANDBOX_BROKEN
    without printing it again. How a loop is left is each shell's own: IPython's ``ask_exit()``,
    ``SystemExit`` for ptpython and the plain console.
    """

    def __init__(self) -> None:
        self.error: SandboxBroken | None = None

    def keep(self, exc: BaseException | None) -> bool:
        """Whether *exc* is the break: then it is kept (the first one), and the shell leaves its loop."""
        if not isinstance(exc, SandboxBroken):
            return False
        if self.error is None:
            self.error = exc
        return True

    def end(self) -> None:
        """After the shell's loop: the session stops with the break, if there was one."""
        if self.error is not None:
            raise self.error


def hold_safe_completion(*places: tuple[Any, str]) -> None:
    """Jedi must not run descriptors (property getters: SQL) while it completes.

    Jedi evaluates them by default in its Interpreter mode. It is imported
    lazily by IPython and ptpython, so the functions through which they reach
    it (*places*: ``(module, attribute)``) are wrapped to switch that off
    first, rather than importing Jedi (~125 ms) at every start.
    """
    for module, attribute in places:
        get = getattr(module, attribute)
        if getattr(get, "_appshell_safe", False):
            continue

        def safe(*args: Any, _get: Any = get, **kwargs: Any) -> Any:
            import jedi

            jedi.settings.allow_unsafe_interpreter_executions = False
            return _get(*args, **kwargs)

        safe._appshell_safe = True  # type: ignore[attr-defined]
        setattr(module, attribute, safe)


# name -> (module that must be importable, runner module in appshell.runtime.shells)
RUNNERS: dict[str, tuple[str, str]] = {
    "ipython": ("IPython", "appshell.runtime.shells.ipython"),
    "ptpython": ("ptpython", "appshell.runtime.shells.ptpython"),
    "python": ("code", "appshell.runtime.shells.plain"),
}
AUTO_ORDER = ("ipython", "ptpython", "python")


def _available(name: str) -> bool:
    # find_spec looks the package up without importing it: cheap.
    return importlib.util.find_spec(RUNNERS[name][0]) is not None


def check_shell_name(choice: str) -> None:
    if choice != "auto" and choice not in RUNNERS:
        raise ConfigError(
            f"unknown shell '{choice}'{did_you_mean(choice, ['auto', *RUNNERS])}",
            "use --shell/APPSHELL_SHELL with one of: auto, " + ", ".join(RUNNERS),
        )


def pick_shell(choice: str) -> str:
    """``auto`` is the first of IPython, ptpython, plain that is installed."""
    check_shell_name(choice)
    if choice == "auto":
        return next(name for name in AUTO_ORDER if _available(name))
    if not _available(choice):
        raise ConfigError(
            f"the {choice} shell is not installed", f"pip install {RUNNERS[choice][0].lower()}, or pick another --shell"
        )
    return choice


def get_runner(name: str) -> Runner:
    module = importlib.import_module(RUNNERS[name][1])
    runner: Runner = module.run
    return runner
