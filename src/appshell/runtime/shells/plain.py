"""The plain ``code.InteractiveConsole`` shell."""

from __future__ import annotations

import code
import sys
from collections.abc import Callable
from typing import Any

from appshell.console.history import History
from appshell.console.interrupted import Interrupted
from appshell.console.refusals import Refusals
from appshell.errors import EXIT_SANDBOX_BROKEN
from appshell.hooks import aio
from appshell.record.journal import Journal
from appshell.runtime.shells import BrokenSandbox, ShellSession, refusal_line, run_startup_file

__all__ = ["run", "JournaledConsole"]


class JournaledConsole(code.InteractiveConsole):
    """An InteractiveConsole whose every complete input goes through the journal."""

    def __init__(
        self,
        namespace: dict[str, Any],
        journal: Journal,
        refusals: Refusals | None = None,
        interrupted: Interrupted | None = None,
        broken: BrokenSandbox | None = None,
    ) -> None:
        super().__init__(namespace, filename="<console>")
        self.compile.compiler.flags |= aio.FLAGS  # top-level await, as `python -m asyncio` allows
        self.journal = journal
        self.refusals = refusals
        self.interrupted = interrupted
        self.broken = broken or BrokenSandbox()
        self._source = ""

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        self._source = source  # runcode() gets only the code object; keep the text for the journal
        return super().runsource(source, filename, symbol)

    def runcode(self, code_obj: Any) -> None:
        if not self._source.strip():
            return  # an empty line: nothing to run, nothing to record
        if self.interrupted is not None:
            self.interrupted.start()
        try:
            with self.journal.statement(self._source):
                aio.execute(code_obj, self.locals)
        except SystemExit:
            raise
        except BaseException as exc:
            if self.broken.keep(exc):
                raise SystemExit(EXIT_SANDBOX_BROKEN) from None  # leaves interact(); the runner raises the break
            line = refusal_line(exc, self.refusals)  # the audit or a safety check refused: one line
            if line is None and self.interrupted is not None:
                line = self.interrupted.recover(exc)  # Ctrl-C stopped a database statement: rolled back, one line
            if line is not None:
                print(line, file=sys.stderr)
            else:  # like the REPL: show the traceback and carry on (KeyboardInterrupt included)
                self.showtraceback()


HISTORY_LENGTH = 10_000


def _enable_readline(namespace: dict[str, Any], history: History) -> Callable[[], None]:
    """Tab completion, and this project's history; returns what saves the history at the end."""
    try:
        import readline
        import rlcompleter
    except ImportError:  # no readline on this platform: the console still works
        return lambda: None
    readline.set_completer(rlcompleter.Completer(namespace).complete)
    readline.parse_and_bind("tab: complete")
    path = history.file("python")
    readline.clear_history()  # a history read by site (~/.python_history) is not this project's
    if path is None:
        return lambda: None
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    first_new = readline.get_current_history_length()

    def save() -> None:
        # Mask secrets in the lines typed in this session before they reach the disk.
        for index in range(first_new, readline.get_current_history_length()):
            line = readline.get_history_item(index + 1)
            if line is not None:
                readline.replace_history_item(index, history.redact(line))
        readline.set_history_length(HISTORY_LENGTH)
        readline.write_history_file(path)

    return save


def run(shell: ShellSession) -> None:
    look = shell.look
    sys.ps1 = look.paint(f"[{look.label}]", bold=True, readline=True) + " >>> "
    sys.ps2 = " " * (len(look.label) + 3) + "... "
    save_history = _enable_readline(shell.namespace, shell.history)
    broken = BrokenSandbox()
    try:
        run_startup_file(shell)
        try:
            JournaledConsole(shell.namespace, shell.journal, shell.refusals, shell.interrupted, broken).interact(
                banner=shell.banner, exitmsg=""
            )
        except SystemExit:
            if broken.error is None:
                raise  # the operator's own exit()
    finally:
        save_history()
    broken.end()
