"""The plain ``code.InteractiveConsole`` shell."""

from __future__ import annotations

import code
import sys
from typing import Any

from appshell.errors import AppshellError
from appshell.journal import Journal
from appshell.shells import ShellSession, run_startup_file

__all__ = ["run", "JournaledConsole"]


class JournaledConsole(code.InteractiveConsole):
    """An InteractiveConsole whose every complete input goes through the journal."""

    def __init__(self, namespace: dict[str, Any], journal: Journal) -> None:
        super().__init__(namespace, filename="<console>")
        self.journal = journal
        self._source = ""

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        self._source = source  # runcode() gets only the code object; keep the text for the journal
        return super().runsource(source, filename, symbol)

    def runcode(self, code_obj: Any) -> None:
        try:
            with self.journal.statement(self._source):
                exec(code_obj, self.locals)
        except SystemExit:
            raise
        except AppshellError as exc:  # the audit refused the statement: say so in one line
            print(exc.format(), file=sys.stderr)
        except BaseException:
            # Like the REPL: show the traceback and carry on (KeyboardInterrupt included).
            self.showtraceback()


def _enable_completion(namespace: dict[str, Any]) -> None:
    try:
        import readline
        import rlcompleter
    except ImportError:  # no readline on this platform: the console still works
        return
    readline.set_completer(rlcompleter.Completer(namespace).complete)
    readline.parse_and_bind("tab: complete")


def run(shell: ShellSession) -> None:
    look = shell.look
    sys.ps1 = look.paint(f"[{look.label}]", bold=True, readline=True) + " >>> "
    sys.ps2 = " " * (len(look.label) + 3) + "... "
    _enable_completion(shell.namespace)
    run_startup_file(shell)
    JournaledConsole(shell.namespace, shell.journal).interact(banner=shell.banner, exitmsg="")
