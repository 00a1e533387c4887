"""A session's end: what it set up, taken down in one order whatever fails (docs/design.md §2).

:class:`Live` holds what :func:`appshell.runtime.session.run_session` has set up so far; its
:meth:`Live.teardown` pushes the steps onto the session's ``ExitStack`` (``PROCESS.session()``).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appshell.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR
from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.audit import Auditor
    from appshell.boot.context import AppContext
    from appshell.config.settings import Settings
    from appshell.record.journal import Journal
    from appshell.recorder.channel import SessionAuditor
    from appshell.safety.database import Coverage
    from appshell.safety.sandbox import Sandbox

__all__ = ["Live", "end_status"]


def end_status(code: int | None, exc: BaseException | None) -> str:
    import signal

    if isinstance(exc, KeyboardInterrupt) or code == EXIT_INTERRUPTED:
        return "interrupted"
    signalled = {128 + signal.SIGTERM, 128 + signal.SIGHUP}
    if code in signalled or (isinstance(exc, SystemExit) and exc.code in signalled):
        return "terminated"
    return "ok" if code == EXIT_OK and exc is None else "error"


@dataclass
class Live:
    """What a session has set up so far: its teardown takes down what is there, whatever failed."""

    settings: Settings
    ctx: AppContext
    code: int | None = None
    auditor: Auditor | SessionAuditor | None = None
    sandbox: Sandbox | None = None
    coverage: Coverage | None = None
    journal: Journal | None = None
    namespace: dict[str, Any] = field(default_factory=dict)

    def teardown(self, ends: ExitStack) -> None:
        """The session's end, in this order (pushed in reverse: an ExitStack runs the last pushed first),
        each step whatever the steps before it raised."""
        from appshell.hooks import aio
        from appshell.safety.engines import session_over

        ends.push(self._end_audit)  # last: whatever failed above, the audit session ends
        ends.callback(session_over)  # the class-level listeners keep watching leftover threads, not this main thread
        ends.callback(self._close_journal)  # threads the session leaves behind can run no more SQL
        ends.callback(aio.close)
        ends.callback(self._close_app)
        ends.callback(self._finish_operator_code)
        ends.callback(self._leave_if_forked)  # first

    def _leave_if_forked(self) -> None:
        if self.journal is not None and self.journal.forked:
            from appshell.record import nested

            nested.unwatch(self.journal)
            _leave_forked_child(self.code)

    def _finish_operator_code(self) -> None:
        """The operator's async code (tasks, async generators, executor threads) ends now, recorded and under
        the guards, as asyncio.Runner would end it at the program's end; then, in the console script, what
        Python runs at exit. Nothing of the operator's runs after this."""
        if self.journal is None:
            return
        from appshell.hooks import aio
        from appshell.record import nested

        try:
            aio.finish()
        finally:
            if PROCESS.standalone:
                _finish_operator_code(self.namespace)
            nested.unwatch(self.journal)

    def _close_app(self) -> None:
        if self.sandbox is not None:
            self.sandbox.freeze()  # what the program left uncommitted is counted before appshell rolls it back
        self.ctx.close()
        if self.sandbox is not None:
            from appshell.console.dry_run import summary

            print(summary(self.sandbox), file=sys.stderr)

    def _close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def _end_audit(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if self.auditor is not None:
            self.auditor.end(
                "sandbox_broken"
                if self.sandbox is not None and self.sandbox.broken
                else "read_only_lifted"
                if self.coverage is not None and self.coverage.lifted
                else end_status(self.code, exc)
            )
        return False  # the exception goes on

    def raise_broken(self, failure: BaseException | None) -> None:
        """Exit 6 whatever the program did with the exception: the sandbox broke (SandboxBroken), or
        read-only was switched off — even where the program caught the error."""
        if (
            self.sandbox is not None
            and self.sandbox.broken is not None
            and type(failure) is not type(self.sandbox.broken)
        ):
            raise self.sandbox.broken
        if self.coverage is not None and self.coverage.lifted is not None and failure is not self.coverage.lifted:
            raise self.coverage.lifted


def _finish_operator_code(namespace: dict[str, Any]) -> None:
    """What Python runs at exit, run now, while the guards are up and the journal records:
    the operator's objects are let go (files they left open are flushed, finalizers run) and
    the ``atexit`` handlers run. After the session's end nothing of theirs may run."""
    import atexit

    atexit._run_exitfuncs()  # first: the handlers still see the names they were written with
    namespace.clear()  # refcounting closes what only the namespace held (no gc pass: it costs ~20 ms)


def _leave_forked_child(code: int | None) -> None:
    """A child forked by a statement ends here, without a record: the parent owns the session's
    records, and the connections the child inherited belong to the parent (closing them would
    roll back the parent's transaction)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_USER_ERROR if code is None else code)
