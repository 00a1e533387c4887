"""The IPython shell.

IPython swallows exceptions raised by event callbacks, so an event cannot stop
a cell. The statement is therefore recorded from an input transformer, which
runs before the cell: if the journal cannot record it, the transformer raises
and IPython shows the error instead of running the cell (fail-closed).
``post_run_cell`` records the outcome. The transformer only sees the
transformed text, and IPython 9 transforms before ``pre_run_cell`` fires, so
the raw cell (magics and ``!`` escapes as typed) is taken from ``run_cell``.

Code that no cell shows is recorded where every path to it passes:
- the user's IPython configuration files (``ipython_config.py`` is Python)
  through the config loader, before each file runs;
- startup files, ``exec_files``, ``PYTHONSTARTUP``, ``%run`` and automagic
  ``run`` through ``safe_execfile``/``safe_execfile_ipy``/``safe_run_module``,
  with each file's path, sha256 and text;
- ``exec_lines`` through ``run_cell``, as cells;
- extensions through the extension manager, with the module's file.
Completion never evaluates calls: ``Completer.evaluation`` is held at
``limited`` whatever the configuration says, and Jedi does not run descriptors.
"""
# Over 350 lines: IPython's hook points, each held where every path passes (transformer, files, completer).

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from appshell.console.interrupted import Interrupted, ctrl_c
from appshell.console.refusals import Refusals
from appshell.errors import AppshellError
from appshell.hooks import aio
from appshell.record.journal import Entry, Journal, file_info
from appshell.runtime.shells import BrokenSandbox, ShellSession, hold_safe_completion, refusal_line

__all__ = ["run", "install_hooks"]

SAFE_EVALUATION = "limited"  # IPython's default: hard-coded methods on allow-listed types, never a call


def _refusal(exc: AppshellError) -> Exception:
    # IPython shows a UsageError as one line, where any other exception would
    # bring appshell's frames along.
    from IPython.core.error import UsageError

    return UsageError(exc.format())


class _Hooks:
    def __init__(self, journal: Journal, interrupted: Interrupted | None = None) -> None:
        self.journal = journal
        self.interrupted = interrupted
        self.raw: list[str] = []  # raw cells of the run_cell calls in progress (they nest)
        self.pending: list[bool] = []  # per run_cell call: its raw cell is not yet recorded
        self.entries: list[Entry | None] = []
        self.starting = True  # until IPython's start-up code (startup files, exec_files) has run
        self.broken = BrokenSandbox()
        self.shell: Any = None

    def wrap_run_cell(self, run_cell: Any) -> Any:
        def run_cell_journaled(raw_cell: str, *args: Any, **kwargs: Any) -> Any:
            if self.interrupted is not None and not self.raw:
                self.interrupted.start()
            self.raw.append(raw_cell)
            self.pending.append(True)
            self.entries.append(None)
            try:
                return run_cell(raw_cell, *args, **kwargs)
            finally:
                self.raw.pop()
                self.pending.pop()
                entry = self.entries.pop()
                if entry is not None and entry in self.journal.stack:
                    self.journal.end(entry)  # a cell IPython ended without post_run_cell (an error before exec)

        return run_cell_journaled

    def transform(self, lines: list[str]) -> list[str]:
        # transform_cell() also runs for %time/%timeit bodies: only the cell
        # that run_cell was given is a new statement.
        if self.pending and self.pending[-1]:
            self.pending[-1] = False
            try:
                self.entries[-1] = self.journal.begin(self.raw[-1], kind="cell")
            except AppshellError as exc:  # raising here stops the cell (fail-closed)
                raise _refusal(exc) from None
            self.journal.expected.add("".join(lines).strip())  # IPython compiles this text next: not nested code
        return lines

    def post_run_cell(self, result: Any) -> None:
        error = result.error_in_exec or result.error_before_exec
        if self.broken.keep(error):
            self.shell.ask_exit()  # leaves the shell; the runner raises the break
        if self.entries and self.entries[-1] is not None:
            entry, self.entries[-1] = self.entries[-1], None
            self.journal.end(entry, error)
        if error is not None and ctrl_c(error) is not None and self.interrupted is not None:
            line = self.interrupted.recover(error)  # after the cell's outcome: the rollback is a statement of its own
            if line is not None:
                print(line, file=sys.stderr)

    def journaled_file(self, run: Callable[..., Any], kind: str) -> Callable[..., Any]:
        """A runner of a file (%run, startup files, exec_files, PYTHONSTARTUP): record the file, then run it."""

        def run_file(path: Any, *args: Any, **kwargs: Any) -> Any:
            filename = str(path)
            info = file_info(filename) if os.path.isfile(filename) else None
            source = info["text"] if info else f"# {kind}: {filename} (no such file)"
            try:
                entry = self.journal.begin(
                    source,
                    kind="startup" if self.starting and kind == "file" else kind,
                    **({"files": [info]} if info else {}),
                )
            except AppshellError as exc:
                raise _refusal(exc) from None
            failure: BaseException | None = None
            try:
                return run(path, *args, **kwargs)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self.journal.end(entry, failure)

        return run_file

    def journaled_module(self, run: Callable[..., Any]) -> Callable[..., Any]:
        def run_module(name: str, *args: Any, **kwargs: Any) -> Any:
            return self.journaled_file(lambda _path: run(name, *args, **kwargs), "module")(_module_file(name) or name)

        return run_module

    def journaled_extension(self, load: Callable[[str], Any]) -> Callable[[str], Any]:
        def load_extension(name: str) -> Any:
            path = _module_file(name)
            if path is None or _is_ipython_own(path):
                return load(name)  # IPython's own extensions (storemagic) are part of the release
            return self.journaled_file(lambda _path: load(name), "extension")(path)

        return load_extension


def _module_file(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and os.path.isfile(spec.origin) else None


def _is_ipython_own(path: str) -> bool:
    import IPython

    return os.path.realpath(path).startswith(os.path.realpath(os.path.dirname(IPython.__file__)) + os.sep)


def _refusals_in_one_line(
    shell: Any, refusals: Refusals | None, interrupted: Interrupted | None = None, broken: BrokenSandbox | None = None
) -> None:
    """A refusal (read-only, destructive, sandbox; bare or wrapped by SQLAlchemy) or an audit failure
    inside a cell: one line, not the frames of SQLAlchemy and appshell. ``%tb`` shows the whole
    traceback: it asks for the last exception, where a failing cell shows the one it is handling.

    ``showtraceback`` is where every cell's exception passes (``set_custom_exc`` would skip
    ``sys.last_traceback``, which ``%tb`` and ``%debug`` read)."""
    broken = broken or BrokenSandbox()
    show = shell.showtraceback

    def showtraceback(exc_tuple: Any = None, *args: Any, **kwargs: Any) -> Any:
        handling = exc_tuple is not None or sys.exc_info()[0] is not None  # else %tb (or %debug): the last one, whole
        try:
            _etype, value, _tb = shell._get_exc_info(exc_tuple)  # sets sys.last_* as IPython's own does
        except ValueError:
            return show(exc_tuple, *args, **kwargs)
        if handling and broken.keep(value):
            return None  # said once, when it was found (SANDBOX BROKEN / READ-ONLY LIFTED); the session ends
        pressed = ctrl_c(value) if handling else None
        if pressed is not None and interrupted is not None and interrupted.running:
            return None  # Ctrl-C stopped a database statement: post_run_cell rolls back and says so in one line
        if (
            pressed is not None and pressed is not value
        ):  # the task Ctrl-C cancelled: the operator pressed Ctrl-C, say that
            return show((KeyboardInterrupt, pressed, pressed.__traceback__), *args, **kwargs)
        line = refusal_line(value, refusals) if handling else None
        if line is None:
            return show(exc_tuple, *args, **kwargs)
        print(line, file=sys.stderr)
        return None

    shell.showtraceback = showtraceback


def install_hooks(
    shell: Any, journal: Journal, refusals: Refusals | None = None, interrupted: Interrupted | None = None
) -> _Hooks:
    hooks = _Hooks(journal, interrupted)
    hooks.shell = shell
    _refusals_in_one_line(shell, refusals, interrupted, hooks.broken)
    shell.run_cell = hooks.wrap_run_cell(shell.run_cell)
    shell.events.register("post_run_cell", hooks.post_run_cell)
    shell.input_transformers_post.append(hooks.transform)
    shell.safe_execfile = hooks.journaled_file(shell.safe_execfile, "file")
    shell.safe_execfile_ipy = hooks.journaled_file(shell.safe_execfile_ipy, "file")
    shell.safe_run_module = hooks.journaled_module(shell.safe_run_module)
    shell.extension_manager.load_extension = hooks.journaled_extension(shell.extension_manager.load_extension)
    _hold_completer(shell.Completer)
    _record_unpickling(shell, journal)
    return hooks


def _record_unpickling(shell: Any, journal: Journal) -> None:
    """IPython's ``%store -r`` and ``StoreMagics.autorestore`` unpickle files, and unpickling runs
    code: each file is recorded (path, sha256) before it is loaded."""
    db_class = type(shell.db)
    get = db_class.__getitem__
    if getattr(get, "_appshell_recorded", False):
        return

    def getitem(self: Any, key: str) -> Any:
        path = os.path.join(str(self.root), key)
        if os.path.isfile(path):
            info = file_info(path)
            journal.nested(f"# unpickle {path}", kind="pickle", files=[info])  # its text shows what it would call
        return get(self, key)

    getitem._appshell_recorded = True  # type: ignore[attr-defined]
    db_class.__getitem__ = getitem


def _hold_completer(completer: Any) -> None:
    """Completion must never evaluate calls, whatever a config file or ``%config`` says."""

    def hold(change: Any = None) -> None:
        if completer.evaluation != SAFE_EVALUATION or completer.policy_overrides:
            if change is not None:
                print(
                    f"appshell: Completer.evaluation stays '{SAFE_EVALUATION}': completion must not run code",
                    file=sys.stderr,
                )
            completer.evaluation = SAFE_EVALUATION
            completer.policy_overrides = {}

    hold()
    completer.observe(hold, names=["evaluation", "policy_overrides"])
    import IPython.core.completer

    hold_safe_completion((IPython.core.completer, "_get_jedi"))
    _hold_guarded_eval()


SAFE_LEVELS = ("forbidden", "minimal", "limited")


def _hold_guarded_eval() -> None:
    """Below the completer object, where every completer passes: a new completer made by
    ``init_completer()`` after ``%config Completer.evaluation = "unsafe"`` is held too."""
    import IPython.core.guarded_eval as guarded

    evaluate = guarded.guarded_eval
    if getattr(evaluate, "_appshell_safe", False):
        return

    def guarded_eval(code: str, context: Any) -> Any:
        if context.evaluation not in SAFE_LEVELS or context.policy_overrides:
            context = context.replace(evaluation=SAFE_EVALUATION, policy_overrides={})
        return evaluate(code, context)

    guarded_eval._appshell_safe = True  # type: ignore[attr-defined]
    guarded.guarded_eval = guarded_eval


def _redact_history(manager: Any, redact: Callable[[str], str]) -> None:
    """IPython stores each cell in its history database: mask secrets first, as the audit does."""
    store = manager.store_inputs

    def store_inputs(line_num: int, source: str, source_raw: str | None = None) -> None:
        store(line_num, redact(source), redact(source_raw) if source_raw is not None else None)

    manager.store_inputs = store_inputs


def _prompts(shell: Any, label: str) -> Any:
    from IPython.terminal.prompts import Prompts
    from pygments.token import Token

    class LabelledPrompts(Prompts):
        def in_prompt_tokens(self) -> list[tuple[Any, str]]:
            return [(Token.AppshellLabel, f"[{label}] "), *super().in_prompt_tokens()]

    return LabelledPrompts(shell)


def _sync_cells_in_greenlet(shell: Any) -> None:
    """An async app: a cell without `await` runs inside SQLAlchemy's greenlet too (lazy loads,
    helpers, its display hook), as an awaiting one does through the loop runner."""
    run_code = shell.run_code

    async def run_code_in_greenlet(code_obj: Any, result: Any = None, *, async_: bool = False) -> Any:
        if async_:
            return await run_code(code_obj, result, async_=True)
        return aio.sync_io(_finish, run_code(code_obj, result, async_=False))

    shell.run_code = run_code_in_greenlet


def _finish(coro: Any) -> Any:
    """Run a coroutine that never waits (IPython's run_code of a sync
    cell) to its end, as IPython's own pseudo-sync runner does."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("a cell without await waited on something")


def _app_class(journal: Journal, refusals: Refusals | None = None, interrupted: Interrupted | None = None) -> Any:
    """TerminalIPythonApp whose configuration files and start-up code are journaled."""
    from IPython.core.application import ProfileAwareConfigLoader
    from IPython.terminal.ipapp import TerminalIPythonApp
    from traitlets.config.loader import JSONFileConfigLoader

    class JournaledConfigLoader(ProfileAwareConfigLoader):
        def _read_file_as_dict(self) -> None:
            # An ipython_config.py is Python, run as the app's user: record it before it runs.
            info = file_info(self.full_filename)
            with journal.statement(info["text"], kind="config", files=[info]):
                super()._read_file_as_dict()

    class JournaledJSONConfigLoader(JSONFileConfigLoader):
        def _read_file_as_dict(self) -> dict[str, Any]:
            # JSON runs nothing itself, but it sets what runs (exec_lines, extensions, classes to import).
            info = file_info(self.full_filename)
            journal.nested(info["text"], kind="config", files=[info])
            result: dict[str, Any] = super()._read_file_as_dict()
            return result

    class JournaledIPythonApp(TerminalIPythonApp):
        python_config_loader_class = JournaledConfigLoader
        json_config_loader_class = JournaledJSONConfigLoader

        def init_shell(self) -> None:
            super().init_shell()
            self.appshell_hooks = install_hooks(
                self.shell, journal, refusals, interrupted
            )  # before extensions, startup files and exec_lines run

        def init_code(self) -> None:
            super().init_code()
            self.appshell_hooks.starting = False

    return JournaledIPythonApp


def run(shell_session: ShellSession) -> None:
    from pygments.token import Token
    from traitlets.config import Config

    look = shell_session.look
    config = Config()
    config.TerminalInteractiveShell.banner1 = shell_session.banner
    config.TerminalInteractiveShell.confirm_exit = False
    config.TerminalInteractiveShell.term_title = False
    if not look.use_color:
        config.TerminalInteractiveShell.colors = "nocolor"
    history = shell_session.history.file("ipython.sqlite")
    if history is None:
        config.HistoryManager.enabled = False  # not the global ~/.ipython history either
    else:
        config.HistoryManager.hist_file = str(history)
    app_class = _app_class(shell_session.journal, shell_session.refusals, shell_session.interrupted)
    app = app_class.instance(config=config, user_ns=shell_session.namespace)
    try:
        app.initialize(argv=[])
    except AppshellError:
        raise
    except Exception as exc:
        # A refused config file or start-up file arrives wrapped by IPython's config machinery.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, AppshellError):
            raise cause from None
        raise
    shell: Any = app.shell
    shell.loop_runner = aio.run  # top-level await runs on the session's one event loop
    if aio.greenlets():
        _sync_cells_in_greenlet(shell)
    _redact_history(shell.history_manager, shell_session.history.redact)
    shell.prompts = _prompts(shell, look.label)
    if look.use_color and look.color != "none":
        shell.highlighting_style_overrides = {Token.AppshellLabel: f"ansi{look.color} bold"}
        shell.refresh_style()
    try:
        app.start()
        app.appshell_hooks.broken.end()
    finally:
        # What IPython does at interpreter exit (history written, temporary files removed) is
        # done now: appshell leaves with os._exit once the session has ended (cli.entry).
        shell.atexit_operations()
        import atexit

        atexit.unregister(shell.atexit_operations)  # done once: a second run finds its temporary files gone
        # The app is a singleton: clear it so a later run in this process starts afresh.
        app_class.clear_instance()
        type(shell).clear_instance()
