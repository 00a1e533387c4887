"""The ``appshell`` command: parse, resolve settings, boot, run, tear down.

Errors become output in exactly one place, :func:`main`.
"""
# Over 350 lines: the command line's commands in one place, as Flask's cli.py: argv → command, errors said once.

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from appshell.cli.command_line import (
    DOCTOR,
    PROFILES,
    PROTECTED,
    SHELL,
    Line,
    audit_key,
    audit_log,
    audit_verb,
    project_of,
    split,
)
from appshell.cli.command_line import parser as command_parser
from appshell.config.settings import OPTIONS
from appshell.errors import (
    EXIT_CHAIN_BROKEN,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER_ERROR,
    AppshellError,
    SandboxBroken,
    UsageError,
)

if TYPE_CHECKING:
    from appshell.config.settings import Settings
    from appshell.runtime.program import Program
    from appshell.runtime.session import Options

__all__ = ["main", "parse", "build_parser", "split_argv"]


def build_parser() -> argparse.ArgumentParser:
    """The session's parser (``appshell --help``); every command's comes from one table (command_line)."""
    return command_parser(SHELL)


def split_argv(argv: Sequence[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """Split like ``python``: options, then ``-c CODE`` or SCRIPT (or ``-``), then the program's ARGS.

    A command's name (doctor, profiles, audit) stands where the SCRIPT would: see :func:`command_line.split`.
    """
    line = split(argv)
    if line.command != SHELL:
        return line.options, None, line.command, line.args
    return line.options, line.code, line.script, line.args


def _flags(opts: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives (None: not given), by option name."""
    if opts.database_url == "":
        raise UsageError(
            "--database-url is empty", "give the database's URL, or drop the flag to use DATABASE_URL or .env"
        )
    flags = {o.name: getattr(opts, o.name) for o in OPTIONS if o.flag}
    flags["models"] = tuple(opts.models) if opts.models else None
    return flags


def _on_signal(signum: int, frame: Any) -> NoReturn:
    # Turn SIGTERM/SIGHUP into SystemExit so every `finally` runs: session rolled back, audit ended.
    raise SystemExit(128 + signum)


def _program(command: str | None, script: str | None, args: list[str]) -> Program | None:
    """What runs instead of a shell, as ``python`` picks it: -c CODE, SCRIPT, ``-`` or stdin without a terminal."""
    from appshell.runtime.program import Program

    if command is not None:
        return Program.from_command(command, args)
    if script == "-" or (script is None and not sys.stdin.isatty()):
        return Program.from_stdin(args)
    if script is not None:
        return Program.from_script(script, args)
    return None


def parse(argv: Sequence[str]) -> tuple[Settings, Program | None, Options]:
    """The shell's command line → what the session runs with, what it runs (None: a shell), and how."""
    return _parse_session(split(argv), argv)


def _parse_session(line: Line, argv: Sequence[str]) -> tuple[Settings, Program | None, Options]:
    from appshell.config.policy import apply_policy
    from appshell.config.settings import resolve

    if line.command != SHELL:
        raise UsageError(
            f"'{line.command}' is a command, not a session",
            f"run appshell {line.command}, or a script so named as ./{line.command}",
        )
    opts = command_parser(SHELL).parse_args(line.options)
    settings = apply_policy(resolve(_flags(opts), project=opts.project), write=opts.read_only is False)
    program = _program(line.code, line.script, line.args)
    if opts.json and program is None:
        raise UsageError("--json needs -c CODE, a SCRIPT or stdin", 'use appshell --json -c "EXPR"')
    from appshell.runtime.session import Options

    return (
        settings,
        program,
        Options(json=opts.json, quiet=opts.quiet, assume_yes=opts.yes, traceback=opts.traceback, argv=list(argv)),
    )


def run_shell(line: Line, argv: Sequence[str]) -> int:
    settings, program, options = _parse_session(line, argv)  # first: --help imports nothing more
    from appshell.config.settings import export_environment
    from appshell.runtime.session import run_session

    export_environment(settings)
    from appshell.process import PROCESS

    if PROCESS.standalone:  # the console script: a recorder process keeps the record, where there is one to keep
        from appshell.cli.recorded import recorded, run_recorded_session

        if recorded(settings):
            return run_recorded_session(settings, program, options, _handled, parse)
    return run_session(settings, program, options)


def list_profiles(argv: Sequence[str]) -> int:
    from appshell.config.profiles import load_profile, profile_names
    from appshell.config.settings import find_project_root
    from appshell.console.render import table

    opts = command_parser(PROFILES).parse_args(argv)
    root = find_project_root(Path.cwd().resolve(), opts.project)
    for name in profile_names(root):
        profile = load_profile(name, root)
        # Lists shown as the file writes them: ["file"], not ('file',).
        rows = [
            [key, list(value) if isinstance(value, tuple) else value]
            for key, value in sorted(profile.items())
            if key != "description"
        ]
        where = ", ".join(str(p) for p in profile.sources)
        print(table(["key", "value"], rows, f"{name} — {profile.description}  ({where})"))
        print()
    return EXIT_OK


def audit_command(argv: Sequence[str]) -> int:
    """``appshell audit VERB``: its flags before or after the verb, each refused where it means nothing."""
    verb, rest = audit_verb(argv)
    return AUDIT_VERBS[verb](command_parser(f"audit {verb}").parse_args(rest))


def _audit_serve(opts: argparse.Namespace) -> int:
    from appshell.cli.review_web import serve

    return serve(opts)


def _audit_init(opts: argparse.Namespace) -> int:
    """Set up forward-secure sealing for the log; print the verification key, once."""
    from appshell.audit.seal import fingerprint, format_key, init_state, state_path

    path = audit_log(opts, must_exist=False).path
    assert path is not None  # --url means nothing to init: the parser refused it
    if state_path(path).exists():
        raise UsageError(
            f"sealing is already set up for {path} ({state_path(path)})",
            "verify with the key printed then; to start over, move the log and its .seal file away first",
        )
    state, key = init_state(path)
    print(f"sealing on: every record appended to {path} is sealed; the host keeps only the current key, in {state}")
    print(f"verification key (shown once, keep it off this host): {format_key(key)}  (fingerprint {fingerprint(key)})")
    print(f"check with: appshell audit verify --log {path} --key KEY")
    return EXIT_OK


def _audit_rotate(opts: argparse.Namespace) -> int:
    from appshell.audit.filesink import rotate

    path = audit_log(opts).path
    assert path is not None  # --url means nothing to rotate: the parser refused it
    print(f"rotated: {rotate(path)} (the chain goes on in {path})")
    return EXIT_OK


def _audit_verify(opts: argparse.Namespace) -> int:
    from appshell.audit.review import verify

    if opts.url and (opts.key or opts.witness or opts.checkpoint):
        raise UsageError(
            "--key, --witness and --checkpoint check a file, not an SQL sink's table (--url)",
            "name the file with --log PATH",
        )
    log = audit_log(opts)
    report = verify(log, audit_key(opts), Path(opts.checkpoint) if opts.checkpoint else None)
    if report.ok and opts.witness:
        from appshell.audit.witness import compare

        assert log.path is not None  # --witness with --url was refused above
        report = compare(log.path, opts.witness, report)
    stream = sys.stdout if report.ok else sys.stderr  # the warnings are part of the report, before its verdict
    for warning in report.warnings:
        print(f"warning: {warning}", file=stream)
    print(("ok: " if report.ok else "BROKEN: ") + report.summary, file=stream)
    return (
        EXIT_OK if report.ok else EXIT_CHAIN_BROKEN
    )  # tampering has its own code (4): not "your code raised" (1), not the audit failing closed (3)


def _audit_tail(opts: argparse.Namespace) -> int:
    from appshell.audit.review import render_tail, tail_json

    print((tail_json if opts.json else render_tail)(audit_log(opts), opts.n))
    return EXIT_OK


def _audit_show(opts: argparse.Namespace) -> int:
    from appshell.audit.review import find_session, render_session, session_json

    if not opts.session:
        raise UsageError("audit show needs a session id", "see appshell audit tail for the ids")
    log = audit_log(opts)
    if opts.json:
        found = find_session(log, opts.session)
        shown = session_json(found) if found is not None else None
    else:
        shown = render_session(log, opts.session)
    if shown is None:
        raise UsageError(
            f"no single session matches '{opts.session}' in {log.name}", "use an id from appshell audit tail"
        )
    print(shown)
    return EXIT_OK


def _audit_replay(opts: argparse.Namespace) -> int:
    from appshell.cli.audit_io import audit_replay

    return audit_replay(opts)


def _audit_export(opts: argparse.Namespace) -> int:
    from appshell.cli.audit_io import audit_export

    return audit_export(opts)


AUDIT_VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": _audit_init,
    "verify": _audit_verify,
    "tail": _audit_tail,
    "show": _audit_show,
    "rotate": _audit_rotate,
    "serve": _audit_serve,
    "replay": _audit_replay,
    "export": _audit_export,
}


def doctor_command(argv: Sequence[str]) -> int:
    opts = command_parser(DOCTOR).parse_args(argv)
    from appshell.cli.doctor import run_doctor
    from appshell.config.settings import export_environment, resolve

    settings = resolve(
        _flags(opts), project=opts.project, strict=False
    )  # doctor reports audit-policy problems as FAIL rows
    export_environment(settings)
    return run_doctor(settings, as_json=opts.json)


def protected_command(argv: Sequence[str]) -> int:
    """``appshell protected``: the app's protected columns and why, from its models and the profile."""
    opts = command_parser(PROTECTED).parse_args(argv)
    from appshell.boot.context import boot
    from appshell.config.settings import export_environment, resolve
    from appshell.console.protect_report import report
    from appshell.hooks import aio

    settings = resolve(_flags(opts), project=opts.project, strict=False)
    export_environment(settings)
    ctx = boot(settings)
    try:
        print(report(settings.profile, ctx.models.values(), ctx.metadata, as_json=opts.json))
    finally:
        try:
            ctx.close()
        finally:
            aio.close()
    return EXIT_OK


COMMANDS = {"profiles": list_profiles, "audit": audit_command, "doctor": doctor_command, "protected": protected_command}


def main(argv: Sequence[str] | None = None) -> int:
    """The console-script entry point; returns the exit code (docs/design.md §7)."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        from appshell.config.settings import find_project_root
        from appshell.runtime.reexec import maybe_reexec

        line = split(argv)
        from appshell.cli.recorded import privileged_start

        if not privileged_start():  # sudo appshell: the config's project, never a re-exec as root (docs/privsep.md)
            maybe_reexec(argv, find_project_root(Path.cwd().resolve(), project_of(line)))
        if line.command != SHELL:
            return COMMANDS[line.command](line.command_args)  # the options before its name are its own too
        return run_shell(line, argv)

    return _handled(run)


def _install_signals() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)  # a dropped ssh connection: end the session cleanly
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN and sys.stdin.isatty():
        # An operator at a terminal: Ctrl-C stops a runaway statement even when whatever started
        # appshell (a wrapper's `trap '' INT`, a background job) left SIGINT ignored — an ignored
        # signal survives exec, and Python then installs no KeyboardInterrupt handler of its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _handled(call: Callable[[], int]) -> int:
    """*call*'s exit code; appshell's errors said in one line, here only (and in a recorded
    session's child, the same way)."""
    from appshell.boot.crash import AppCrashed, format_crash

    _install_signals()  # again in a recorded session's child: the recorder's own handlers are not the session's
    try:
        return call()
    except AppshellError as exc:
        if not isinstance(
            exc, SandboxBroken
        ):  # SANDBOX BROKEN / READ-ONLY LIFTED: said once already, when it was found
            print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except AppCrashed as crash:
        sys.stderr.write(format_crash(crash))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nappshell: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `appshell profiles | head`: the reader left; so does appshell, without a traceback.
        _silence_stdout()
        return EXIT_OK
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit cannot fail again (Python's docs' recipe)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry() -> NoReturn:
    """The console script: :func:`main`, then leave at once.

    Once the audit session has ended, no more of the operator's code may run:
    ``atexit`` handlers, finalizers and threads left running would run
    unrecorded, after the read-only and sandbox guards were taken down. So the
    process ends with ``os._exit`` after flushing its output (the shells saved
    their history on the way out).
    """
    import os

    from appshell.process import PROCESS

    PROCESS.standalone = True  # atexit handlers and finalizers run before the session ends, not after
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
