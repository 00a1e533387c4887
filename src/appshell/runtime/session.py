"""One appshell session, start to end: boot, audit, safety, run (docs/design.md §2).

Its teardown (appshell.runtime.teardown) is pushed onto the session's ExitStack before anything
runs: the session is rolled back and closed, the sandbox's transaction rolled back, and the
audit session ended on every path — Ctrl-D, exceptions, and SIGTERM (turned into SystemExit by
the CLI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appshell.errors import EXIT_OK
from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.audit import Auditor
    from appshell.boot.context import AppContext
    from appshell.boot.release import Parity
    from appshell.config.settings import Settings
    from appshell.console.refusals import Refusals
    from appshell.record.journal import Journal
    from appshell.recorder.channel import SessionAuditor
    from appshell.runtime import teardown
    from appshell.runtime.program import Program
    from appshell.safety.database import Coverage
    from appshell.safety.sandbox import Sandbox

__all__ = ["Options", "run_session"]


@dataclass(frozen=True)
class Options:
    """What the command line says beyond the settings."""

    json: bool = False
    quiet: bool = False
    assume_yes: bool = False
    traceback: bool = False  # --traceback: refusals with their whole traceback
    argv: list[str] = field(default_factory=list)


@contextmanager
def _loading(settings: Settings, quiet: bool) -> Iterator[None]:
    """A status line while a big app imports, at a terminal only; erased once it has."""
    show = not quiet and sys.stderr.isatty()
    if show:
        print(f"appshell: loading {settings.app or ', '.join(settings.models)} …", end="", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if show:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _check_release(settings: Settings, release: str) -> Parity:
    """Same release as the web process? A mismatch is loud, or an error where the profile says so."""
    from appshell.boot.release import check_parity
    from appshell.console.banner import alarm
    from appshell.errors import ConfigError

    parity = check_parity(release, settings.profile, settings.project_root)
    if parity.state == "mismatch" and settings.profile.release.on_mismatch == "error":
        raise ConfigError(
            parity.describe(release),
            "run appshell from the web process's release, or deploy this one to the web process first",
        )
    if parity.state in ("mismatch", "unknown"):
        warning = f"appshell: WARNING: {parity.describe(release)}"
        print(alarm(warning, sys.stderr.isatty()), file=sys.stderr)
    return parity


def _start_audit(
    settings: Settings,
    ctx: AppContext,
    program: Program | None,
    shell: str | None,
    release: str,
    options: Options,
    parity: Parity,
    before: dict[str, Any],
    auditor: Auditor | SessionAuditor | None,
) -> Auditor | SessionAuditor:
    """Start the audit session: in this process, or (*auditor* a SessionAuditor) by reporting to the recorder."""
    from appshell.audit import open_auditor
    from appshell.config.redact import mask_url
    from appshell.safety.readonly_role import read_only_level

    if auditor is None:
        auditor = open_auditor(settings, ctx.engine.url.render_as_string(hide_password=False))
    auditor.start(
        {
            "mode": program.mode if program else "interactive",
            "shell": shell,
            "profile": settings.profile.name,
            "release": release,
            "release_parity": parity.state,
            "release_expected": parity.expected,
            "app": ctx.label,
            "database": mask_url(ctx.engine.url.render_as_string(hide_password=True)),
            "sandbox": settings.sandbox,
            "read_only": settings.read_only,
            "read_only_level": read_only_level(
                settings
            ),  # "enforced" (a read-only role), "guarded" (a session setting) or None
            "reason": settings.reason,
            "argv": options.argv,
            **before,  # what could change the session before its first statement (reexec.before_session)
        }
    )
    return auditor


def before_record(settings: Settings, program: Program | None, options: Options) -> dict[str, Any]:
    """What could have changed this process before its first statement, taken before the app boots
    (issue 22 item 10); under a locked audit, the process first re-executes itself isolated. A recorded
    session's recorder takes it (cli.recorded), before the fork: the session is that process, as it was."""
    from appshell.runtime.reexec import before_session, isolate, launch_environment

    left = isolate(
        settings.profile.audit.locked,
        settings.profile.name,
        options.argv,
        program.source if program is not None and program.mode == "stdin" else None,
        settings.reason,
        standalone=PROCESS.standalone,
    )
    before = before_session(
        launch_environment(), standalone=PROCESS.standalone
    )  # the environment as appshell found it, not with what settings exported
    if left:
        before["not_neutralised"] = left  # locked, but run in-process (a library call of main()): recorded only
    return before


def _apply_safety(
    settings: Settings, ctx: AppContext, session_id: str, options: Options
) -> tuple[Sandbox | None, Coverage]:
    """Read-only, sandbox, timeouts, tagging and the destructive guard, on every engine in the process."""
    from appshell.safety.database import ConnectionPlan, Coverage, refuse_orm_writes
    from appshell.safety.engines import take_over

    take_over()
    profile = settings.profile
    sandbox = None
    if settings.sandbox:
        from appshell.safety.sandbox import Sandbox

        sandbox = Sandbox()
    role_url = None
    if settings.read_only:
        from appshell.safety.readonly_role import read_only_url, use_role

        role_url = read_only_url(settings)
        if role_url is not None:
            use_role(role_url)  # every connection to the app's database logs in as the read-only role
    coverage = Coverage(
        ConnectionPlan(
            read_only=settings.read_only,
            statement_timeout_ms=profile.database.statement_timeout_ms,
            idle_in_transaction_timeout_ms=profile.database.idle_in_transaction_timeout_ms,
            application_name=f"appshell:{session_id}",
            fresh_connections=role_url is not None,
        ),
        sandbox,
        profile.name,
    )
    coverage.install()
    ctx.teardown.append(coverage.close_all)  # after the app's engine is disposed: every other engine's connections
    if settings.read_only:
        refuse_orm_writes(ctx.session, profile.name)
    if profile.access.confirm_destructive:
        from appshell.safety.guard import install_guard

        install_guard(assume_yes=options.assume_yes)
    return sandbox, coverage


def run_session(
    settings: Settings, program: Program | None, options: Options, reporter: SessionAuditor | None = None
) -> int:
    """One session; *reporter*: the recorder's channel (cli.recorded), else the audit is kept in this process."""
    from appshell.boot.context import boot
    from appshell.boot.release import release_id
    from appshell.record.boot_sql import BootSql
    from appshell.runtime.shells import check_shell_name, pick_shell

    check_shell_name(settings.shell)  # before booting: a bad --shell costs nothing
    before = {} if reporter is not None else before_record(settings, program, options)  # else the recorder's
    shell_name = pick_shell(settings.shell) if program is None else None
    release = release_id(settings.project_root)
    parity = _check_release(settings, release)
    # --json: stdout carries the JSON alone, so what the app prints while it boots goes to stderr.
    with (
        _loading(settings, quiet=options.quiet or program is not None),
        redirect_stdout(sys.stderr) if options.json else nullcontext(),
        BootSql() as boot_sql,  # what the app's own code ran while it booted: in the session_start
    ):
        ctx = boot(settings)
    before = {**before, **boot_sql.fields()}
    from appshell.runtime.teardown import Live

    live = Live(settings, ctx)
    failure: BaseException | None = None
    try:
        with PROCESS.session() as ends:
            live.teardown(ends)
            live.code = _run(live, program, options, shell_name, release, parity, before, reporter)
            return live.code
    except BaseException as exc:
        failure = exc
        raise
    finally:
        live.raise_broken(failure)


def _run(
    live: teardown.Live,
    program: Program | None,
    options: Options,
    shell_name: str | None,
    release: str,
    parity: Parity,
    before: dict[str, Any],
    reporter: SessionAuditor | None,
) -> int:
    """Audit, safety, journal and namespace set up (each kept on *live* as it is, for the teardown), then the run."""
    from appshell.console.echo import SqlEcho
    from appshell.console.namespace import build_namespace
    from appshell.record import nested
    from appshell.record.journal import Journal

    settings, ctx = live.settings, live.ctx
    auditor = live.auditor = _start_audit(
        settings, ctx, program, shell_name, release, options, parity, before, reporter
    )
    for warning in ctx.warnings:
        print(f"appshell: warning: {warning}", file=sys.stderr)
    live.sandbox, live.coverage = _apply_safety(settings, ctx, auditor.session, options)
    echo = SqlEcho(ctx.engine, settings.echo_sql)
    journal = live.journal = Journal([auditor])
    journal.attach()
    nested.watch(journal)
    namespace = live.namespace = build_namespace(ctx, settings, journal, {"echo_sql": echo.helper()})
    if program is not None:
        from appshell.runtime.program import run_program

        return run_program(
            program, namespace, journal, want_json=options.json, refusals=lambda: _refusals(settings, options)
        )
    return _interactive(
        settings,
        ctx,
        namespace,
        journal,
        shell_name or "python",
        options.quiet,
        release,
        parity,
        auditor.redact,
        _refusals(settings, options),
    )


def _refusals(settings: Settings, options: Options) -> Refusals:
    """How refusals are shown: made where one is, for a program (not on -c's start-up path)."""
    from appshell.console.refusals import Refusals

    return Refusals.of(settings, traceback=options.traceback)


def _interactive(
    settings: Settings,
    ctx: AppContext,
    namespace: dict[str, Any],
    journal: Journal,
    shell_name: str,
    quiet: bool,
    release: str,
    parity: Parity,
    redact: Callable[[str], str],
    refusals: Refusals,
) -> int:
    from appshell.console.banner import Look, make_banner
    from appshell.console.history import history_for
    from appshell.runtime.shells import ShellSession, get_runner

    look = Look.of(settings)
    banner = "" if quiet else make_banner(settings, ctx, shell_name, release, look, parity)
    interrupted = None
    if callable(namespace.get("rollback")):
        from appshell.console.interrupted import Interrupted

        # The helper as built (the operator may rebind the name); in a sandbox it returns to the sandbox's savepoint.
        interrupted = Interrupted(journal, namespace["rollback"], sandbox=settings.sandbox)
        interrupted.install()
    get_runner(shell_name)(
        ShellSession(namespace, banner, look, journal, history_for(settings, redact), refusals, interrupted)
    )
    return EXIT_OK
