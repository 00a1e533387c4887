"""A session of the console script, kept by a recorder process (issue 22; docs/audit.md, "Who keeps the record").

Where the profile keeps an audit (any sink), ``appshell`` becomes two processes before it boots the
app: the recorder (this process: it holds the sinks, the sealing key and the raw input) and the
session (its forked child: the app, the shell, the operator's code). :mod:`appshell.recorder.forked`
says the order; this module says what the recorder knows of the session before it runs — the
command line, the program it read (the ``-c`` code, a script's bytes, stdin), what could change the
interpreter — and what the child runs: the same session as an unrecorded ``appshell``, reporting
to the recorder instead of holding an auditor.

Called as a library (``cli.main`` in another program, as the in-process test harness runs it),
appshell keeps the record in its own process, as it always did: there is no process to split.

Started as root with ``/etc/appshell/recorder.toml`` present (``sudo appshell …``), the two processes
are two users (docs/privsep.md): :func:`privileged_settings` resolves the settings in the file's
project and sends the record to the file's log, whatever the command line, the environment or the
profile say; :func:`~appshell.recorder.forked.record_forked` gets the users to become.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appshell.errors import ConfigError

if TYPE_CHECKING:
    from appshell.config.settings import Settings
    from appshell.recorder.channel import Channel
    from appshell.recorder.privsep import Drop
    from appshell.runtime.program import Program
    from appshell.runtime.session import Options

__all__ = ["recorded", "run_recorded_session", "privileged_start", "privileged_settings", "input_of", "OUTPUT_CAP"]

OUTPUT_CAP = 1 << 20  # bytes of terminal output kept per session where the profile records output


def recorded(settings: Settings) -> bool:
    """Does this session get a recorder? Where the profile keeps an audit at all, and always as root with the
    recorder's config present (there the config, not the profile, says that a record is kept)."""
    return bool(settings.profile.audit.sinks) or _privileged()


def _privileged() -> bool:
    if os.geteuid() != 0:  # the common path imports nothing more
        return False
    from appshell.recorder.privsep import privileged

    return privileged()


def privileged_start() -> bool:
    """As root with the recorder's config: change to its project, keep the launch environment, and say so.

    For ``cli.main`` to call *instead of* ``maybe_reexec``: as root, re-executing into the project's ``.venv``
    would run, as root, an interpreter the app's user can write. The config is loaded (and refused if wrong)."""
    if not _privileged():
        return False
    from appshell.recorder.privsep import RecorderConfig
    from appshell.runtime.reexec import remember_launch_environment

    remember_launch_environment()
    os.chdir(RecorderConfig.load().project)
    return True


def privileged_settings(
    settings: Settings,
    argv: Sequence[str],
    program: Program | None = None,
    parse: Callable[[Sequence[str]], Any] | None = None,
) -> tuple[Settings, Drop | None]:
    """As root: the settings of the config's project, its log the record's, and the users to become; else unchanged.

    Root without the config runs as before (a root shell, a container: one user, same-user mode) unless sudo
    started it: then the operator asked for a separation that is not set up, and a session as root next to its
    own record would be the opposite, so it is refused (docs/privsep.md)."""
    if os.geteuid() != 0:
        return settings, None
    from appshell.recorder import privsep

    if not privsep.privileged():
        if "SUDO_UID" in os.environ:  # set by sudo; a root caller who sets it by hand only refuses itself
            raise ConfigError(
                f"appshell runs as root through sudo and {privsep.CONFIG_PATH} does not exist: the "
                "session would run as root, beside its own record",
                "set up privilege-separated mode (docs/privsep.md), or run appshell without sudo",
            )
        return settings, None
    config = privsep.RecorderConfig.load()  # a file that exists but is wrong refuses: no fallback
    if program is not None and program.mode == "script":  # read by root, from the caller's directory
        _refuse_unreadable(Path(program.filename), config.session_user, "the script")
    os.chdir(config.project)  # the project is the file's, not the caller's directory
    if settings.project_root is None or settings.project_root.resolve() != config.project.resolve():
        assert parse is not None, "the command line's parser: cli.main passes its own (no import back up)"
        settings = _resolve_in_project(settings, argv, config.project, parse)
    if "file" not in settings.profile.audit.sinks:
        raise ConfigError(
            f"profile '{settings.profile.name}' keeps no audit file, and {config.path} sends the record "
            f"to {config.log}",
            'choose a profile whose audit.sinks has "file" (the shipped ones do)',
        )
    env_file = Path(settings.env_file)
    env_file = env_file if env_file.is_absolute() else config.project / env_file
    if env_file.exists():  # read by root; what it holds goes to the session
        _refuse_unreadable(env_file, config.session_user, "the env file (--env-file, APPSHELL_ENV_FILE, env_file)")
    sources = {**settings.sources, "audit_log": str(config.path)}
    settings = dataclasses.replace(settings, audit_log=str(config.log), sources=sources)
    if "sql" in settings.profile.audit.sinks:
        if config.witness_url_file is None:
            raise ConfigError(
                f"profile '{settings.profile.name}' keeps the audit in SQL too, and {config.path} names no "
                "witness_url_file: its credentials would be the app's user's",
                'add witness_url_file = "/etc/appshell/witness.url" to it, a file of the recorder\'s user, mode 0600 '
                "(docs/privsep.md)",
            )
        # Not the profile's or the environment's URL: the recorder reads its own file once it is its user.
        settings = dataclasses.replace(settings, audit_url=None, sources={**settings.sources, "audit_url": "config"})
    environ = dict(settings.dotenv)  # the app's own configuration: its .env, which its user reads anyway
    if settings.database_url:
        environ["DATABASE_URL"] = settings.database_url
    return settings, privsep.Drop(
        config.recorder_user, config.session_user, config.project, environ, config.witness_url_file
    )


def _refuse_unreadable(path: Path, user: str, what: str) -> None:
    from appshell.recorder.privsep import readable_by

    if not readable_by(path, user):
        raise ConfigError(
            f"{what} {path} cannot be read by '{user}', the session's user",
            f"name a file '{user}' can read: root reads it for the session, and shows it nothing more",
        )


def _resolve_in_project(
    settings: Settings, argv: Sequence[str], project: os.PathLike[str], parse: Callable[[Sequence[str]], Any]
) -> Settings:
    """The command line again, in the config's project (the caller's directory found another one, or none)."""
    from appshell.config.settings import export_environment

    if settings.reason:
        os.environ["APPSHELL_REASON"] = settings.reason  # asked at the terminal already: not asked twice
    settings = parse(argv)[0]
    if settings.project_root is None or settings.project_root.resolve() != Path(os.path.realpath(project)):
        raise ConfigError(
            f"--project names {settings.project_root}, and the recorder's config fixes the project at {project}",
            "drop --project: under sudo the project is the config's (docs/privsep.md)",
        )
    export_environment(settings)
    return settings


def input_of(program: Program | None) -> dict[str, Any] | None:
    """The raw input the recorder read before the session ran, with its sha256; None for a terminal (recorded as
    typed)."""
    if program is None:
        return None
    data = program.source.encode("utf-8", "surrogateescape")
    record: dict[str, Any] = {"kind": program.mode, "text": program.source, "sha256": hashlib.sha256(data).hexdigest()}
    if program.mode == "script":
        record["path"] = program.filename
        record["file_sha256"] = program.audit.get("sha256")  # the file's bytes, before newlines were normalised
    return record


def _database_url(settings: Settings, witness_file: bool = False) -> str:
    """The URL the SQL sink falls back to: known before the app boots, or the sink is configured apart."""
    url = settings.database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    if "sql" in settings.profile.audit.sinks and not settings.audit_url and not witness_file:
        raise ConfigError(
            f"profile '{settings.profile.name}' keeps the audit in SQL, and its database is not known before the app "
            "boots",
            "set audit.url in the profile (or APPSHELL_AUDIT_URL), or DATABASE_URL",
        )
    return ""


def run_recorded_session(
    settings: Settings,
    program: Program | None,
    options: Options,
    handled: Callable[[Callable[[], int]], int],
    parse: Callable[[Sequence[str]], Any],
) -> int:
    """Fork the session, keep its record here; the session's exit code. *handled* runs a call as ``cli.main``
    does (errors said in one line, exit codes), in the child."""
    from appshell.recorder.forked import record_forked
    from appshell.runtime.session import before_record

    settings, drop = privileged_settings(settings, options.argv, program, parse)
    profile = settings.profile
    # Under a locked audit, the recorder itself runs isolated: a sitecustomize would otherwise run in it.
    before = before_record(settings, program, options)
    url = _database_url(settings, drop is not None and drop.witness_url_file is not None)
    # Imported once, before the fork, and shared: the session needs SQLAlchemy to boot the app, and the
    # recorder's redaction reads URLs with its parser (make_url). Imported after, each process paid ~0.3 s.
    import sqlalchemy.engine  # noqa: F401

    session = uuid.uuid4().hex[:16]
    # At a terminal the relay's pty stands between it and the session: for a shell always, for a program where its
    # output is recorded (then /dev/tty is the recorder's pty too: recorder/tee.py says why).
    relayed = program is None or (profile.audit.record_output and program.mode != "stdin")
    terminal = relayed and sys.stdin.isatty() and sys.stdout.isatty()
    if (
        drop is not None
    ):  # who asked (sudo's SUDO_USER: the operator cannot set it) and the users the kernel keeps apart
        before["privsep"] = {
            "recorder_user": drop.recorder_user,
            "session_user": drop.session_user,
            "project": str(drop.project),
            "operator": os.environ.get("SUDO_USER"),
        }
    start = {
        "mode": program.mode if program else "interactive",
        "profile": profile.name,
        "argv": options.argv,
        "reason": settings.reason,
        "input": input_of(program),
        **before,
    }

    def open_writer() -> Any:
        from appshell.audit.auditor import open_auditor

        sinks = settings
        if drop is not None and drop.witness_url_file is not None:  # the recorder's user now: its own file
            from appshell.recorder.privsep import read_witness_url

            sinks = dataclasses.replace(settings, audit_url=read_witness_url(drop.witness_url_file))
        auditor = open_auditor(sinks, url)
        auditor.session = session
        return auditor

    def child(channel: Channel) -> int:
        from appshell.config.settings import session_redactor
        from appshell.recorder.channel import SessionAuditor
        from appshell.runtime.session import run_session

        reporter = SessionAuditor(channel, session, profile.audit.required, session_redactor(settings, os.environ))
        return handled(lambda: run_session(settings, program, options, reporter=reporter))

    return record_forked(
        child,
        open_writer,
        start,
        terminal=terminal,
        drop=drop,
        record_output=profile.audit.record_output,
        output_cap=profile.audit.output_cap or OUTPUT_CAP,
    )
