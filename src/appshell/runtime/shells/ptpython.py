"""The ptpython shell.

ptpython's ``embed()`` builds its own ``PythonRepl``; the ``configure`` hook
gets that instance, and replacing its ``eval``/``eval_async`` (ptpython ≥
3.0.17 calls them for every input) routes each input through the journal.

Completion never evaluates code: ptpython's "dictionary completion" runs
``eval`` on fragments of the input as it is typed, so it is held off — the
attribute is read-only on this REPL and the option is gone from its menu —
and Jedi does not run descriptors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import escape
from typing import Any

from appshell.console.interrupted import Interrupted
from appshell.console.refusals import Refusals
from appshell.errors import EXIT_SANDBOX_BROKEN
from appshell.hooks import aio
from appshell.record.journal import Journal
from appshell.runtime.shells import BrokenSandbox, ShellSession, refusal_line, run_startup_file

__all__ = ["run", "install_hooks"]


def install_hooks(
    repl: Any,
    journal: Journal,
    broken: BrokenSandbox | None = None,
    refusals: Refusals | None = None,
    interrupted: Interrupted | None = None,
) -> None:
    """Every input through the journal. A refusal prints one line; a broken sandbox ends the REPL
    (ptpython returns on SystemExit) and is kept in *broken* for the runner to raise."""
    broken = broken or BrokenSandbox()
    ptpython_eval: Callable[[str], object] = repl.eval
    plain_eval_async = repl.eval_async

    def plain_eval(line: str) -> object:
        # ptpython's own eval runs an awaiting input with get_running_loop(), which has no loop
        # in embed(): such an input runs on the session's loop instead (appshell.hooks.aio).
        if "await" not in line and "async" not in line:
            return aio.sync_io(ptpython_eval, line)  # an async app's sync IO runs in SQLAlchemy's greenlet
        try:
            code, mode = repl._compile_with_flags(line, "eval"), "eval"
        except SyntaxError:
            code, mode = repl._compile_with_flags(line, "exec"), "exec"
        if not aio.awaits(code):
            return aio.sync_io(ptpython_eval, line)
        result = aio.execute(code, repl.get_globals(), repl.get_locals())
        if mode == "exec":
            return None
        repl._store_eval_result(result)
        return result

    def refused(exc: Exception) -> bool:
        """Whether *exc* was a refusal, said in one line; else ptpython shows its traceback."""
        if broken.keep(exc):
            raise SystemExit(EXIT_SANDBOX_BROKEN)  # leaves the REPL; the runner raises the break
        line = refusal_line(exc, refusals)
        if line is None:
            return False
        print(line, file=sys.stderr)
        return True

    def recovered(exc: KeyboardInterrupt) -> bool:
        """Ctrl-C stopped a database statement: its transaction rolled back (recorded), said in one line."""
        line = interrupted.recover(exc) if interrupted is not None else None
        if line is not None:
            print(line, file=sys.stderr)
        return line is not None

    @contextmanager
    def statement(line: str) -> Iterator[None]:
        """One input, recorded; a refusal or an interrupted database statement ends it in one line (the
        eval then returns None), anything else is ptpython's to show."""
        if interrupted is not None:
            interrupted.start()
        try:
            with journal.statement(line):
                yield
        except Exception as exc:  # a refusal, bare or wrapped by SQLAlchemy: one line
            if not refused(exc):
                raise
        except KeyboardInterrupt as exc:
            if not recovered(exc):
                raise

    def eval(line: str) -> object:
        with statement(line):
            return plain_eval(line)
        return None

    async def eval_async(line: str) -> object:
        with statement(line):
            return await plain_eval_async(line)
        return None

    repl.eval = eval
    repl.eval_async = eval_async
    _hold_safe_completion(repl)


_EVAL_OPTIONS = ("enable_dictionary_completion",)  # options whose completion runs eval() on the input


def _hold_safe_completion(repl: Any) -> None:
    import ptpython.completer
    import ptpython.python_input
    import ptpython.signatures

    # At class level too, where every REPL passes: a statement that swaps this REPL's class
    # back, or makes a completer of its own, still gets no eval-based completion.
    ptpython.completer.DictionaryCompleter.get_completions = lambda self, document, complete_event: iter(())  # type: ignore[method-assign]
    ptpython.python_input.get_signatures_using_eval = lambda *args, **kwargs: []  # type: ignore[attr-defined]

    from appshell.runtime.shells import hold_safe_completion

    # A data descriptor on the class wins over the instance's attribute: the
    # option reads False whatever the menu, a config or a statement sets.
    off = {name: property(lambda self: False, lambda self, value: None) for name in _EVAL_OPTIONS}
    repl.__class__ = type("AppshellPythonRepl", (type(repl),), off)
    for category in repl.options:
        category.options = [o for o in category.options if o.title != "Dictionary completion"]
    hold_safe_completion(
        (ptpython.completer, "get_jedi_script_from_document"), (ptpython.signatures, "get_jedi_script_from_document")
    )


def run(shell_session: ShellSession) -> None:
    from prompt_toolkit.formatted_text import HTML
    from ptpython.prompt_style import PromptStyle
    from ptpython.repl import embed

    look = shell_session.look
    color = f"ansi{look.color}" if look.use_color and look.color != "none" else ""

    class LabelledPrompt(PromptStyle):
        def in_prompt(self) -> Any:
            label = f"<b>[{escape(look.label)}]</b>"
            return HTML((f"<style fg='{color}'>{label}</style>" if color else label) + " &gt;&gt;&gt; ")

        def in2_prompt(self, width: int) -> Any:
            return "... ".rjust(width)

        def out_prompt(self) -> Any:
            return ""

    history = shell_session.history

    broken = BrokenSandbox()

    def configure(repl: Any) -> None:
        install_hooks(repl, shell_session.journal, broken, shell_session.refusals, shell_session.interrupted)
        store = repl.history.store_string
        repl.history.store_string = lambda line: store(history.redact(line))  # secrets masked before the disk
        repl.all_prompt_styles["appshell"] = LabelledPrompt()
        repl.prompt_style = "appshell"
        repl.confirm_exit = False
        repl.enable_system_bindings = True
        if not look.use_color:
            repl.enable_syntax_highlighting = False

    print(shell_session.banner)
    run_startup_file(shell_session)
    namespace = shell_session.namespace
    path = history.file("ptpython")
    # Without a file, ptpython keeps an in-memory history only.
    embed(
        globals=namespace,
        locals=namespace,
        configure=configure,
        title="appshell",
        history_filename=str(path) if path else None,
    )
    broken.end()
