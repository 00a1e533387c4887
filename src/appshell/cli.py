"""The ``appshell`` command: parse, resolve settings, boot, run, tear down.

Errors become output in exactly one place, :func:`main`.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from appshell import __version__
from appshell.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, AppshellError, UsageError
from appshell.settings import LAYERS, OPTIONS

if TYPE_CHECKING:
    from appshell.program import Program
    from appshell.session import Options
    from appshell.settings import Settings

__all__ = ["main", "parse", "build_parser", "split_argv"]

SUBCOMMANDS = ("profiles", "audit", "doctor")  # a first argument that names one is not a SCRIPT

EPILOG = f"""\
modes:
  appshell                     interactive shell at a terminal; without one, the program on stdin
  appshell -c CODE [ARGS...]   run CODE in the app context, then exit
  appshell SCRIPT.py [ARGS...] run a one-off script in the app context, then exit
  appshell - [ARGS...]         read the program from stdin
  appshell profiles            list the profiles and what each sets
  appshell doctor [--json]     check interpreter, release, settings, database, audit sinks
  appshell audit init|verify|tail|show SESSION|rotate [--log PATH | --url URL] [--key KEY] [--witness URL]
                               seal the audit log, check its chain and seal, review sessions
  appshell audit serve [--log PATH | --url URL] [--host 127.0.0.1] [--port 8023] [--key KEY]
                               the auditors' review web page (extra appshell[review])

settings precedence, highest first: {" > ".join(LAYERS)}
  (flag, environment variable, .env file, profile, [tool.appshell] in pyproject.toml, default)

exit codes: 0 ok, 1 your code raised, 2 usage/config error, 3 audit failure, 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, "see appshell --help")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="appshell",
        description="Open a shell (or run code) in your SQLAlchemy app's context, every statement audited.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in OPTIONS:
        if option.flag is None:
            continue
        help = option.help + (f" [{option.env}{'=1' if option.kind == 'bool' else ''}]" if option.env else "")
        if option.name == "read_only":  # a pair, one or the other
            rw = p.add_mutually_exclusive_group()
            rw.add_argument(option.flag, dest=option.name, action="store_const", const=True, help=help)
            rw.add_argument("--write", dest=option.name, action="store_const", const=False, help="allow writes where the profile allows it")
        elif option.kind == "bool":
            p.add_argument(option.flag, dest=option.name, action="store_const", const=True, help=help)
        else:
            p.add_argument(option.flag, dest=option.name, metavar=option.metavar, action="append" if option.kind == "list" else "store", help=help)
    p.add_argument("--project", metavar="DIR", help="the project root (default: found upward from here)")
    p.add_argument("-y", "--yes", action="store_true", help="allow destructive statements without asking (no tty)")
    p.add_argument("--json", action="store_true", help="with -c/SCRIPT: print the last expression's value as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no banner")
    p.add_argument("--no-reexec", action="store_true", help="stay in this interpreter, even if the project has .venv/")
    p.add_argument("-V", "--version", action="version", version=f"appshell {__version__}")
    return p


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The shell's parser, built once per process (argparse costs milliseconds of start-up)."""
    return build_parser()


@functools.cache
def _valued() -> frozenset[str]:
    """The options that take a value, read off the parser: the splitter must skip their value."""
    return frozenset(s for action in _parser()._actions if action.nargs != 0 for s in action.option_strings)


def split_argv(argv: Sequence[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """Split like ``python``: options, then ``-c CODE`` or SCRIPT (or ``-``), then the program's ARGS."""
    valued = _valued()
    options: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-c":
            if i + 1 >= len(argv):
                raise UsageError("-c needs the code to run", 'use appshell -c "CODE"')
            return options, argv[i + 1], None, list(argv[i + 2 :])
        if arg.startswith("-c") and not arg.startswith("--"):
            return options, arg[2:], None, list(argv[i + 1 :])
        if arg == "-" or not arg.startswith("-"):
            return options, None, arg, list(argv[i + 1 :])
        if arg == "--":
            rest = argv[i + 1 :]
            return options, None, rest[0] if rest else None, list(rest[1:])
        options.append(arg)
        if arg in valued and i + 1 < len(argv):
            options.append(argv[i + 1])
            i += 1
        i += 1
    return options, None, None, []


def _flags(opts: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives (None: not given), by option name."""
    flags = {o.name: getattr(opts, o.name) for o in OPTIONS if o.flag}
    flags["models"] = tuple(opts.models) if opts.models else None
    return flags


def _on_signal(signum: int, frame: Any) -> NoReturn:
    # Turn SIGTERM/SIGHUP into SystemExit so every `finally` runs: session rolled back, audit ended.
    raise SystemExit(128 + signum)


def _program(command: str | None, script: str | None, args: list[str]) -> Program | None:
    """What runs instead of a shell, as ``python`` picks it: -c CODE, SCRIPT, ``-`` or stdin without a terminal."""
    from appshell.program import Program

    if command is not None:
        return Program.from_command(command, args)
    if script == "-" or (script is None and not sys.stdin.isatty()):
        return Program.from_stdin(args)
    if script is not None:
        return Program.from_script(script, args)
    return None


def parse(argv: Sequence[str]) -> tuple[Settings, Program | None, Options]:
    """The shell's command line → what the session runs with, what it runs (None: a shell), and how."""
    from appshell.policy import apply_policy
    from appshell.settings import resolve

    option_args, command, script, args = split_argv(argv)
    opts = _parser().parse_args(option_args)
    if opts.database_url == "":
        raise UsageError("--database-url is empty", "give the database's URL, or drop the flag to use DATABASE_URL or .env")
    settings = apply_policy(resolve(_flags(opts), project=opts.project), write=opts.read_only is False)
    program = _program(command, script, args)
    if opts.json and program is None:
        raise UsageError("--json needs -c CODE, a SCRIPT or stdin", 'use appshell --json -c "EXPR"')
    from appshell.session import Options

    return settings, program, Options(json=opts.json, quiet=opts.quiet, assume_yes=opts.yes, argv=list(argv))


def run_shell(argv: Sequence[str]) -> int:
    from appshell.session import run_session
    from appshell.settings import export_environment

    settings, program, options = parse(argv)
    export_environment(settings)
    return run_session(settings, program, options)


def list_profiles(argv: Sequence[str]) -> int:
    from appshell.profiles import load_profile, profile_names
    from appshell.render import table
    from appshell.settings import find_project_root

    root = find_project_root(Path.cwd().resolve(), argv[1] if len(argv) > 1 and argv[0] == "--project" else None)
    for name in profile_names(root):
        profile = load_profile(name, root)
        # Lists shown as the file writes them: ["file"], not ('file',).
        rows = [[key, list(value) if isinstance(value, tuple) else value] for key, value in sorted(profile.items()) if key != "description"]
        where = ", ".join(str(p) for p in profile.sources)
        print(table(["key", "value"], rows, f"{name} — {profile.description}  ({where})"))
        print()
    return EXIT_OK


def audit_command(argv: Sequence[str]) -> int:
    import os

    if list(argv[:1]) == ["serve"]:  # the review web page parses its own options
        from appshell.review_web import serve

        return serve(argv[1:])

    from appshell.audit.auditor import default_log_path
    from appshell.audit.review import Log, render_session, render_tail, verify
    from appshell.settings import resolve

    p = _Parser(prog="appshell audit", description="Seal, check and review the audit log.")
    p.add_argument("action", choices=["verify", "tail", "show", "init", "rotate", "serve"])
    p.add_argument("session", nargs="?", help="with show: a session id (a unique prefix is enough)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--log", metavar="PATH", help="the audit file (default: as the shell would write it)")
    where.add_argument("--url", metavar="URL", help="the database of an SQL sink's appshell_audit table")
    p.add_argument("-n", type=int, default=10, help="with tail: how many sessions")
    p.add_argument("--key", metavar="KEY", help="with verify: the verification key `audit init` printed [APPSHELL_AUDIT_KEY]")
    p.add_argument("--witness", metavar="URL", help="with verify: compare the file with the SQL sink's table in this database")
    p.add_argument("--checkpoint", metavar="FILE", help="with verify: go on from (and then update) this checkpoint, kept off the host")
    opts = p.parse_args(argv)
    if opts.url:
        if opts.action in ("init", "rotate") or opts.witness or opts.key or opts.checkpoint:
            raise UsageError(f"--url works with verify, tail and show, without --key/--witness/--checkpoint", "name the file with --log PATH")
        log = Log(url=opts.url)
    else:
        path = Path(opts.log) if opts.log else default_log_path(resolve({}))
        if opts.action == "init":
            return _audit_init(path)
        if not path.is_file():
            raise UsageError(f"no audit log at {path}", "name it with --log PATH (or --url for an SQL sink)")
        log = Log(path=path)
    if opts.action == "rotate":
        from appshell.audit.filesink import rotate

        rotated = rotate(log.path or path)
        print(f"rotated: {rotated} (the chain goes on in {path})")
        return EXIT_OK
    if opts.action == "verify":
        from appshell.audit.seal import parse_key

        key_text = opts.key or os.environ.get("APPSHELL_AUDIT_KEY")
        key = parse_key(key_text) if key_text else None
        report = verify(log, key, Path(opts.checkpoint) if opts.checkpoint else None)
        if report.ok and opts.witness:
            from appshell.audit.witness import compare

            report = compare(log.path or path, opts.witness, report)
        stream = sys.stdout if report.ok else sys.stderr  # the warnings are part of the report, before its verdict
        for warning in report.warnings:
            print(f"warning: {warning}", file=stream)
        print(("ok: " if report.ok else "BROKEN: ") + report.summary, file=stream)
        return EXIT_OK if report.ok else EXIT_USER_ERROR
    if opts.action == "tail":
        print(render_tail(log, opts.n))
        return EXIT_OK
    if not opts.session:
        raise UsageError("audit show needs a session id", "see appshell audit tail for the ids")
    shown = render_session(log, opts.session)
    if shown is None:
        raise UsageError(f"no single session matches '{opts.session}' in {log.name}", "use an id from appshell audit tail")
    print(shown)
    return EXIT_OK


def _audit_init(path: Path) -> int:
    """Set up forward-secure sealing for *path*; print the verification key, once."""
    from appshell.audit.seal import fingerprint, format_key, init_state, state_path

    if state_path(path).exists():
        raise UsageError(f"sealing is already set up for {path} ({state_path(path)})",
                         "verify with the key printed then; to start over, move the log and its .seal file away first")
    state, key = init_state(path)
    print(f"sealing on: every record appended to {path} is sealed; the host keeps only the current key, in {state}")
    print(f"verification key (shown once, keep it off this host): {format_key(key)}  (fingerprint {fingerprint(key)})")
    print(f"check with: appshell audit verify --log {path} --key KEY")
    return EXIT_OK


def doctor_command(argv: Sequence[str]) -> int:
    from appshell.doctor import run_doctor
    from appshell.settings import export_environment, resolve

    option_args, command, script, _ = split_argv(argv)
    p = build_parser()
    p.prog = "appshell doctor"
    opts = p.parse_args(option_args)
    if command is not None or script is not None:
        raise UsageError("appshell doctor takes options only", "see appshell doctor --help")
    settings = resolve(_flags(opts), project=opts.project, strict=False)  # doctor reports audit-policy problems as FAIL rows
    export_environment(settings)
    return run_doctor(settings, as_json=opts.json)


def main(argv: Sequence[str] | None = None) -> int:
    """The console-script entry point; returns the exit code (docs/design.md §7)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from appshell.context import AppCrashed, format_crash

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)  # a dropped ssh connection: end the session cleanly
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN and sys.stdin.isatty():
        # An operator at a terminal: Ctrl-C stops a runaway statement even when whatever started
        # appshell (a wrapper's `trap '' INT`, a background job) left SIGINT ignored — an ignored
        # signal survives exec, and Python then installs no KeyboardInterrupt handler of its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from appshell.reexec import maybe_reexec
        from appshell.settings import find_project_root

        project = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--project"), None)
        maybe_reexec(argv, find_project_root(Path.cwd().resolve(), project))
        if argv and argv[0] in SUBCOMMANDS:
            command = {"profiles": list_profiles, "audit": audit_command, "doctor": doctor_command}[argv[0]]
            return command(argv[1:])
        return run_shell(argv)
    except AppshellError as exc:
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

    from appshell import session

    session.STANDALONE = True  # atexit handlers and finalizers run before the session ends, not after
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
