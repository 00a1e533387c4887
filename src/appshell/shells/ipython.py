"""The IPython shell.

IPython swallows exceptions raised by event callbacks, so an event cannot stop
a cell. The statement is therefore recorded from an input transformer, which
runs before the cell: if the journal cannot record it, the transformer raises
and IPython shows the error instead of running the cell (fail-closed).
``post_run_cell`` records the outcome. The transformer only sees the
transformed text, and IPython 9 transforms before ``pre_run_cell`` fires, so
the raw cell (magics and ``!`` escapes as typed) is taken from ``run_cell``.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from appshell.errors import AppshellError
from appshell.journal import Entry, Journal, file_info
from appshell.shells import ShellSession, startup_file

__all__ = ["run", "install_hooks"]

_RUN_MAGIC = re.compile(r"^\s*%run\s+(.+)$", re.M)


def _run_files(raw_cell: str) -> list[dict[str, str]]:
    """The files that %run lines of a cell execute: their code is in no cell, so record it."""
    files = []
    for args in _RUN_MAGIC.findall(raw_cell):
        try:
            words = [w for w in shlex.split(args) if not w.startswith("-")]
        except ValueError:
            continue
        if words and os.path.isfile(words[0]):
            files.append(file_info(words[0]))
    return files


class _Hooks:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.raw: str | None = None
        self.entry: Entry | None = None

    def wrap_run_cell(self, run_cell: Any) -> Any:
        def run_cell_journaled(raw_cell: str, *args: Any, **kwargs: Any) -> Any:
            self.raw = raw_cell
            try:
                return run_cell(raw_cell, *args, **kwargs)
            finally:
                self.raw = None

        return run_cell_journaled

    def transform(self, lines: list[str]) -> list[str]:
        # transform_cell() also runs for %time/%timeit bodies: only the cell
        # that run_cell was given is a new statement.
        if self.raw is not None:
            raw, self.raw = self.raw, None
            files = _run_files(raw)
            try:
                self.entry = self.journal.begin(raw, kind="cell", **({"files": files} if files else {}))
            except AppshellError as exc:
                # Raising here stops the cell (fail-closed). IPython shows a UsageError as
                # one line, where any other exception would bring appshell's frames along.
                from IPython.core.error import UsageError

                raise UsageError(exc.format()) from None
        return lines

    def post_run_cell(self, result: Any) -> None:
        if self.entry is None:
            return
        entry, self.entry = self.entry, None
        self.journal.end(entry, result.error_in_exec or result.error_before_exec)


def install_hooks(shell: Any, journal: Journal) -> None:
    hooks = _Hooks(journal)
    shell.run_cell = hooks.wrap_run_cell(shell.run_cell)
    shell.events.register("post_run_cell", hooks.post_run_cell)
    shell.input_transformers_post.append(hooks.transform)


def _prompts(shell: Any, label: str) -> Any:
    from IPython.terminal.prompts import Prompts
    from pygments.token import Token

    class LabelledPrompts(Prompts):
        def in_prompt_tokens(self) -> list[tuple[Any, str]]:
            return [(Token.AppshellLabel, f"[{label}] "), *super().in_prompt_tokens()]

    return LabelledPrompts(shell)


def run(shell_session: ShellSession) -> None:
    from IPython.terminal.ipapp import TerminalIPythonApp
    from pygments.token import Token
    from traitlets.config import Config

    look = shell_session.look
    config = Config()
    config.TerminalInteractiveShell.banner1 = shell_session.banner
    config.TerminalInteractiveShell.confirm_exit = False
    config.TerminalInteractiveShell.term_title = False
    if not look.use_color:
        config.TerminalInteractiveShell.colors = "nocolor"
    app = TerminalIPythonApp.instance(config=config, user_ns=shell_session.namespace)
    info = startup_file()
    if info is not None:
        # IPython runs PYTHONSTARTUP inside initialize(): record the file around it.
        with shell_session.journal.statement(info["text"], kind="startup", files=[info]):
            app.initialize(argv=[])
    else:
        app.initialize(argv=[])
    shell: Any = app.shell
    install_hooks(shell, shell_session.journal)
    shell.prompts = _prompts(shell, look.label)
    if look.use_color and look.color != "none":
        shell.highlighting_style_overrides = {Token.AppshellLabel: f"ansi{look.color} bold"}
        shell.refresh_style()
    try:
        app.start()
    finally:
        # The app is a singleton: clear it so a later run in this process starts afresh.
        TerminalIPythonApp.clear_instance()
        type(shell).clear_instance()
