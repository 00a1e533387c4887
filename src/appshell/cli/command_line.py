"""The command line, declared once: every flag and the commands it means something to.

One table (:data:`FLAGS`, the settings' flags taken from :data:`appshell.config.settings.OPTIONS`)
gives the splitter the flags that take a value, each command its parser and its ``--help``,
and the error that says where a flag goes when it is given to a command it means nothing to.
A flag means the same wherever it stands: ``appshell -q doctor`` is ``appshell doctor -q``,
``appshell audit --log X serve`` is ``appshell audit serve --log X``.

Also here, because the audit verbs and the review page share them: what ``--log``/``--url``,
``--audit-log``/``--profile`` and ``--key`` resolve to (:func:`audit_log`, :func:`audit_key`).
Nothing heavy is imported: ``--help`` works where the app cannot boot.
"""
# Over 350 lines: the flag table of every command, and the parsers and help generated from it.

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from appshell import __version__
from appshell.config.settings import LAYERS, OPTIONS
from appshell.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from appshell.audit.review import Log

__all__ = ["Flag", "FLAGS", "Line", "split", "SUBCOMMANDS", "VERBS", "parser", "audit_verb", "audit_log", "audit_key"]

# The commands a flag can mean something to: a session (the shell, -c, SCRIPT, stdin), the two
# other commands, and each audit verb, as "audit VERB".
SHELL, DOCTOR, PROFILES, PROTECTED = "shell", "doctor", "profiles", "protected"
SUBCOMMANDS = (
    "profiles",
    "audit",
    "doctor",
    "protected",
)  # the first word that is not an option's: a command, not a SCRIPT
VERBS = ("init", "verify", "tail", "show", "rotate", "serve", "replay", "export")
AUDIT = frozenset(f"audit {verb}" for verb in VERBS)
RUNS = frozenset({SHELL, DOCTOR})  # doctor checks what a session would run with: every setting counts
EVERY = RUNS | {PROFILES, PROTECTED} | AUDIT
READERS = AUDIT - {"audit init", "audit rotate"}  # what can read an SQL sink's table (--url)
# The settings that say where the shell writes its audit log: the audit verbs read it from there.
_LOG_SETTINGS = ("profile", "env_file", "audit_log")
# The settings that say which app, database and profile: `appshell protected` boots the app with them.
_BOOT_SETTINGS = ("app", "models", "database_url", "env_file", "profile")


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # "-q", "--quiet"
    dest: str
    takes: frozenset[str]  # the commands it means something to
    help: str
    metavar: str | None = None  # None: a flag without a value, which stores *const*
    const: Any = True
    repeat: bool = False  # repeatable, each value kept
    type: Callable[[str], Any] | None = None
    default: Any = None  # where not given
    group: str | None = None  # flags of one group exclude each other
    env: str | None = None  # the variable that also sets it, shown in --help

    @property
    def name(self) -> str:
        return "/".join(self.names)


def _settings_flags() -> list[Flag]:
    flags = []
    for option in OPTIONS:
        if option.flag is None:
            continue
        takes = (
            RUNS
            | (AUDIT if option.name in _LOG_SETTINGS else frozenset())
            | ({PROTECTED} if option.name in _BOOT_SETTINGS else frozenset())
        )
        env = f"{option.env}{'=1' if option.kind == 'bool' else ''}" if option.env else None
        if option.kind == "bool":
            flags.append(
                Flag(
                    (option.flag,),
                    option.name,
                    takes,
                    option.help,
                    env=env,
                    group="rw" if option.name == "read_only" else None,
                )
            )
        else:
            flags.append(
                Flag(
                    (option.flag,),
                    option.name,
                    takes,
                    option.help,
                    option.metavar,
                    repeat=option.kind == "list",
                    env=env,
                )
            )
        if option.name == "read_only":  # a pair, one or the other
            flags.append(
                Flag(
                    ("--write",),
                    "read_only",
                    takes,
                    "allow writes where the profile allows it",
                    const=False,
                    group="rw",
                )
            )
    return flags


FLAGS: tuple[Flag, ...] = (
    *_settings_flags(),
    Flag(("--project",), "project", EVERY, "the project root (default: found upward from here)", "DIR"),
    Flag(
        ("-y", "--yes"),
        "yes",
        frozenset({SHELL}),
        "allow destructive statements without asking (no tty)",
        default=False,
    ),
    Flag(
        ("--json",),
        "json",
        RUNS | {"audit tail", "audit show", PROTECTED},
        "with -c/SCRIPT: print the last expression's value as JSON; with doctor, audit tail/show: the report as JSON",
        default=False,
    ),
    Flag(("-q", "--quiet"), "quiet", EVERY, "no banner", default=False),
    Flag(
        ("--traceback",),
        "traceback",
        frozenset({SHELL}),
        "show a refused statement's whole traceback, not its one line (IPython: %%tb shows the last one)",
        default=False,
    ),
    Flag(
        ("--no-reexec",), "no_reexec", EVERY, "stay in this interpreter, even if the project has .venv/", default=False
    ),
    # The audit verbs' own.
    Flag(
        ("--log",),
        "log",
        AUDIT,
        "the audit file (default: where the shell writes it: --audit-log, --profile, ...)",
        "PATH",
        group="where",
    ),
    Flag(("--url",), "url", READERS, "the database of an SQL sink's appshell_audit table", "URL", group="where"),
    Flag(("-n",), "n", frozenset({"audit tail"}), "how many sessions (default 10)", "N", type=int, default=10),
    Flag(
        ("--key",),
        "key",
        frozenset({"audit verify", "audit serve"}),
        "the verification key `audit init` printed",
        "KEY",
        env="APPSHELL_AUDIT_KEY",
    ),
    Flag(
        ("--witness",),
        "witness",
        frozenset({"audit verify"}),
        "compare the file with the SQL sink's table in this database",
        "URL",
    ),
    Flag(
        ("--checkpoint",),
        "checkpoint",
        frozenset({"audit verify"}),
        "go on from (and then update) this checkpoint, kept off the host",
        "FILE",
    ),
    Flag(
        ("--host",),
        "host",
        frozenset({"audit serve"}),
        "address to listen on (default 127.0.0.1)",
        "HOST",
        default="127.0.0.1",
    ),
    Flag(("--port",), "port", frozenset({"audit serve"}), "port (default 8023)", "PORT", type=int, default=8023),
    Flag(
        ("--tokens-file",),
        "tokens_file",
        frozenset({"audit serve"}),
        "auditors' hashed tokens, name:sha256hex a line",
        "FILE",
        env="APPSHELL_REVIEW_TOKENS_FILE",
    ),
    Flag(
        ("--trust-header",),
        "trust_header",
        frozenset({"audit serve"}),
        "take the auditor's name from this header, set by a reverse "
        "proxy that authenticated them (only behind such a proxy)",
        "NAME",
        env="APPSHELL_REVIEW_TRUST_HEADER",
    ),
    Flag(
        ("--reviews",),
        "reviews",
        frozenset({"audit serve"}),
        "the reviews file (default: reviews.jsonl beside the log; table appshell_review with --url)",
        "PATH",
    ),
    Flag(
        ("--speed",),
        "speed",
        frozenset({"audit replay"}),
        "play this many times faster (default 1: as recorded)",
        "X",
        type=float,
        default=1.0,
    ),
    Flag(
        ("--idle-limit",),
        "idle_limit",
        frozenset({"audit replay"}),
        "cut every pause to at most S seconds",
        "S",
        type=float,
    ),
    Flag(("--asciicast",), "asciicast", frozenset({"audit export"}), "asciicast v2, asciinema's format", default=False),
    Flag(("-o", "--output"), "output", frozenset({"audit export"}), "write to FILE (default: stdout)", "FILE"),
)

EPILOG = f"""\
modes:
  appshell                     interactive shell at a terminal; without one, the program on stdin
  appshell -c CODE [ARGS...]   run CODE in the app context, then exit
  appshell SCRIPT.py [ARGS...] run a one-off script in the app context, then exit
  appshell - [ARGS...]         read the program from stdin
  appshell profiles            list the profiles and what each sets
  appshell protected [--json]  list the protected columns (masked until unlock(reason)) and why
  appshell doctor [--json]     check interpreter, release, settings, database, audit sinks
  appshell audit init|verify|tail|show SESSION|rotate [--log PATH | --url URL] [--key KEY] [--witness URL]
                               seal the audit log, check its chain and seal, review sessions
  appshell audit serve [--log PATH | --url URL] [--host 127.0.0.1] [--port 8023] [--key KEY]
                               the auditors' review web page (extra appshell[review])
  appshell audit replay SESSION [--speed X] | export SESSION --asciicast [-o FILE]
                               a terminal session's recorded output, played or as asciicast v2

options stand before or after a command's name: appshell -q --profile staging doctor, appshell audit --log PATH tail.
The first word that is not an option's value is the command (profiles, doctor, audit) or the SCRIPT: a script
named like a command runs as ./doctor or after --: appshell -- doctor.

settings precedence, highest first: {" > ".join(LAYERS)}
  (flag, environment variable, .env file, profile, [tool.appshell] in pyproject.toml, default)

exit codes: 0 ok, 1 your code raised, 2 usage/config error, 3 audit failure, 130 interrupted
"""

# What each audit verb does: its --help, and the verbs' list in `appshell audit --help`.
VERB_HELP = {
    "init": "set up forward-secure sealing for the log; prints the verification key, once",
    "verify": "check the log's chain (with --key its seal; --witness, --checkpoint)",
    "tail": "the last sessions (-n N)",
    "show": "one session, whole (SESSION: its id; a unique prefix is enough)",
    "rotate": "start a new file; the chain goes on in it",
    "serve": "the auditors' review web page (extra appshell[review]; log-in: APPSHELL_REVIEW_TOKENS=name:token,...)",
    "replay": "play a terminal session's recorded output in this terminal, at its pace (--speed X, --idle-limit S)",
    "export": "write a terminal session's recording as asciicast v2 (--asciicast [-o FILE])",
}
_AUDIT_EPILOG = (
    "verbs:\n"
    + "".join(f"  {verb:<8} {text}\n" for verb, text in VERB_HELP.items())
    + """
the log: --log PATH, or --url URL (an SQL sink), else where the shell writes it (--audit-log,
APPSHELL_AUDIT_LOG, the profile's audit.path: --profile; else .appshell/audit.jsonl in the project).
"""
)


class Parser(argparse.ArgumentParser):
    """A parser for one command; its errors are appshell's one-line usage errors.

    Every flag of the table is known to it, those of other commands hidden from --help, so
    that a flag given where it means nothing is named, with where it goes (:meth:`finish`).
    """

    def __init__(self, command: str | None, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, **kwargs)  # the splitter knows whole names only
        self.command = command

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"see {self.prog} --help")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return self.finish(super().parse_args(args, namespace))

    def finish(self, opts: argparse.Namespace) -> argparse.Namespace:
        """Refuse a flag that means nothing to this command; then fill in the defaults."""
        for flag in FLAGS:
            value = getattr(opts, flag.dest, None)
            if value is None or self.command is None or self.command in flag.takes:
                continue
            if flag.metavar is None and value != flag.const:
                continue  # --read-only/--write: the one given names the error
            raise UsageError(
                f"{flag.name} means nothing to {describe(frozenset({self.command}))}",
                f"use it with {describe(flag.takes)}",
            )
        for flag in FLAGS:
            if getattr(opts, flag.dest, None) is None:
                setattr(opts, flag.dest, flag.default)
        return opts


def describe(commands: frozenset[str]) -> str:
    """Commands as a person reads them: 'appshell doctor or appshell audit verify|serve'."""
    parts = []
    if SHELL in commands:
        parts.append("a session (the shell, -c, SCRIPT)")
    parts += [f"appshell {name}" for name in (DOCTOR, PROFILES, PROTECTED) if name in commands]
    verbs = [verb for verb in VERBS if f"audit {verb}" in commands]
    if verbs:
        parts.append("appshell audit" + ("" if len(verbs) == len(VERBS) else " " + "|".join(verbs)))
    return " or ".join(parts)


def _help(flag: Flag, command: str | None) -> str:
    if command is not None and command not in flag.takes:
        return argparse.SUPPRESS
    text = flag.help + (f" [{flag.env}]" if flag.env else "")
    if command is None:  # `appshell audit --help`: say which verbs a verb's own flag is for
        verbs = [verb for verb in VERBS if f"audit {verb}" in flag.takes]
        if len(verbs) < len(VERBS):
            text = f"with {', '.join(verbs)}: {text}"
    return text


def _build(command: str | None, prog: str, description: str, epilog: str | None = None) -> Parser:
    p = Parser(
        command, prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups: dict[str, Any] = {}
    for flag in FLAGS:
        common = {"dest": flag.dest, "default": None, "help": _help(flag, command)}
        if command is None and not flag.takes & AUDIT:
            common["help"] = argparse.SUPPRESS
        where: Any = p
        if flag.group is not None and common["help"] != argparse.SUPPRESS:  # a flag hidden here is refused anyway
            if flag.group not in groups:
                groups[flag.group] = p.add_mutually_exclusive_group()
            where = groups[flag.group]
        if flag.metavar is None:
            where.add_argument(*flag.names, action="store_const", const=flag.const, **common)
        else:
            where.add_argument(
                *flag.names, action="append" if flag.repeat else "store", metavar=flag.metavar, type=flag.type, **common
            )
    p.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"appshell {__version__}",
        help=None if command == SHELL else argparse.SUPPRESS,
    )
    return p


@functools.cache
def _parser(command: str | None) -> Parser:
    if command == SHELL:
        return _build(
            SHELL,
            "appshell",
            "Open a shell (or run code) in your SQLAlchemy app's context, every statement audited.",
            EPILOG,
        )
    if command == DOCTOR:
        return _build(
            DOCTOR,
            "appshell doctor",
            "Check interpreter, release, settings, database and audit sinks; exit non-zero on any problem.",
            f"settings precedence, highest first: {' > '.join(LAYERS)}",
        )
    if command == PROTECTED:
        return _build(
            PROTECTED,
            "appshell protected",
            "List the columns the app's data protects (masked until unlock(reason)) and why each is.",
        )
    if command == PROFILES:
        return _build(
            PROFILES,
            "appshell profiles",
            "List the profiles (shipped, and the project's profiles/) and what each sets.",
        )
    if command is None:  # `appshell audit` before its verb is known: --help only
        p = _build(None, "appshell audit", "Seal, check and review the audit log.", _AUDIT_EPILOG)
        p.add_argument("verb", metavar="VERB", choices=VERBS, help="|".join(VERBS))
        p.add_argument("session", nargs="?", help="with show, replay, export: a session id (a unique prefix is enough)")
        return p
    verb = command.removeprefix("audit ")
    p = _build(
        command,
        f"appshell audit {verb}",
        VERB_HELP[verb][0].upper() + VERB_HELP[verb][1:] + ".",
        _AUDIT_EPILOG.split("\n\n")[-1],
    )
    if verb in ("show", "replay", "export"):
        p.add_argument("session", nargs="?", help="a session id (a unique prefix is enough)")
    return p


def parser(command: str | None = SHELL) -> Parser:
    """The parser of *command* (shell, doctor, profiles, "audit VERB"; None: ``appshell audit`` itself), built once."""
    return _parser(command)


@functools.cache
def _valued() -> frozenset[str]:
    """The flags that take a value: the splitter skips their value, whichever command they are for."""
    return frozenset(name for flag in FLAGS if flag.metavar is not None for name in flag.names)


@dataclass(frozen=True)
class Line:
    """argv, split as ``python`` splits its own: options, then
    ``-c CODE``, a SCRIPT, ``-`` or a command's name, then the rest."""

    options: list[str]
    command: str = SHELL  # shell, doctor, profiles or audit
    code: str | None = None
    script: str | None = None
    args: list[str] = field(default_factory=list)  # the program's ARGS, or the command's own arguments

    @property
    def command_args(self) -> list[str]:
        """A command's options and arguments, those before its name included (they mean the same there)."""
        return [*self.options, *self.args]


def split(argv: Sequence[str]) -> Line:
    """Split *argv*. A command's name counts only as the first word that is not an option's value,
    and not after ``--``: ``appshell -- doctor``, ``appshell ./doctor`` run a script named doctor."""
    valued = _valued()
    options: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-c":
            if i + 1 >= len(argv):
                raise UsageError("-c needs the code to run", 'use appshell -c "CODE"')
            return Line(options, code=argv[i + 1], args=list(argv[i + 2 :]))
        if arg.startswith("-c") and not arg.startswith("--"):
            return Line(options, code=arg[2:], args=list(argv[i + 1 :]))
        if arg == "--":
            rest = argv[i + 1 :]
            return Line(options, script=rest[0] if rest else None, args=list(rest[1:]))
        if arg in SUBCOMMANDS:
            return Line(options, command=arg, args=list(argv[i + 1 :]))
        if arg == "-" or not arg.startswith("-"):
            return Line(options, script=arg, args=list(argv[i + 1 :]))
        options.append(arg)
        if arg in valued and i + 1 < len(argv):
            options.append(argv[i + 1])
            i += 1
        i += 1
    return Line(options)


def project_of(line: Line) -> str | None:
    """``--project DIR`` where the options say it (not in a program's ARGS): re-exec looks there before parsing."""
    words = line.command_args if line.command != SHELL else line.options
    valued = _valued()
    project = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--project" and i + 1 < len(words):
            project = words[i + 1]
        elif word.startswith("--project="):
            project = word.partition("=")[2]
        i += 2 if word in valued else 1  # a value is not an option, even one spelled --project
    return project


def audit_verb(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``appshell audit``'s arguments → its verb, and the rest (options may stand before it)."""
    valued = _valued()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            break
        if not word.startswith("-"):
            if word not in VERBS:
                raise UsageError(
                    f"unknown audit command '{word}'{did_you_mean(word, VERBS)}",
                    "use appshell audit " + "|".join(VERBS),
                )
            return word, [*argv[:i], *argv[i + 1 :]]
        i += 2 if word in valued else 1
    if "-h" in argv or "--help" in argv:
        parser(None).parse_args(list(argv))  # prints appshell audit's help, exits
    raise UsageError(
        "appshell audit needs a verb", "use appshell audit " + "|".join(VERBS) + " (see appshell audit --help)"
    )


def audit_log(opts: argparse.Namespace, must_exist: bool = True) -> Log:
    """The log the audit verbs read: ``--url``, ``--log``, else where the shell writes it, resolved
    from ``--audit-log``, ``--profile``, ``--env-file``, ``--project``, the environment and the profile."""
    from appshell.audit.review import Log

    if getattr(opts, "url", None):
        return Log(url=opts.url)
    if getattr(opts, "log", None):
        if getattr(opts, "audit_log", None):
            raise UsageError("--log and --audit-log both name the audit file", "give one of them")
        path = Path(opts.log)
    else:
        from appshell.audit.auditor import default_log_path
        from appshell.config.settings import resolve

        flags = {name: getattr(opts, name, None) for name in _LOG_SETTINGS}
        path = default_log_path(resolve(flags, project=getattr(opts, "project", None)))
    if must_exist and not path.is_file():
        raise UsageError(f"no audit log at {path}", "name it with --log PATH (or --url for an SQL sink)")
    return Log(path=path)


def audit_key(opts: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The verification key: ``--key``, else ``APPSHELL_AUDIT_KEY``; None where neither is set."""
    text = getattr(opts, "key", None) or environ.get("APPSHELL_AUDIT_KEY")
    if not text:
        return None
    from appshell.audit.seal import parse_key

    return parse_key(text)
