"""Where flags stand (issue 20 item 7): a flag means the same before or after a command's name,
an audit verb's flags stand before or after the verb, and a flag given to a command it means
nothing to is a one-line error naming where it goes. In-process (tests/support/harness.py run())."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.harness import Result, run

from appshell.cli.command_line import FLAGS, Line, project_of, split

pytestmark = pytest.mark.in_process

TOKENS = {"APPSHELL_REVIEW_TOKENS": "alice:a-token-of-16-or-more-characters"}


# -- the split: which word is the command ---------------------------------------------------------

# (argv, what split() makes of it: options, command, -c CODE, SCRIPT, the rest)
SPLITS: list[tuple[list[str], Line]] = [
    (["-q", "doctor"], Line(["-q"], "doctor")),
    (["--app", "X", "doctor"], Line(["--app", "X"], "doctor")),
    (["--profile", "staging", "audit", "tail"], Line(["--profile", "staging"], "audit", args=["tail"])),
    (["--project", "DIR", "profiles"], Line(["--project", "DIR"], "profiles")),
    (
        ["--log", "x", "audit", "serve"],
        Line(["--log", "x"], "audit", args=["serve"]),
    ),  # an audit flag's value is skipped too
    (["doctor", "--json"], Line([], "doctor", args=["--json"])),
    # A script named like a command: a file name is not a command's name; ./doctor and -- doctor are scripts.
    (["doctor.py"], Line([], script="doctor.py")),
    (["./doctor"], Line([], script="./doctor")),
    (["--", "doctor"], Line([], script="doctor")),
    (["-q", "--", "audit", "x"], Line(["-q"], script="audit", args=["x"])),
    # A command's name anywhere else is not one: an option's value, a program's ARGS.
    (["--reason", "doctor", "-c", "1"], Line(["--reason", "doctor"], code="1")),
    (["-c", "1", "doctor"], Line([], code="1", args=["doctor"])),
    (["fix.py", "audit", "tail"], Line([], script="fix.py", args=["audit", "tail"])),
    (["-", "profiles"], Line([], script="-", args=["profiles"])),
]


@pytest.mark.parametrize(("argv", "line"), SPLITS, ids=[" ".join(a) for a, _ in SPLITS])
def test_split(argv: list[str], line: Line) -> None:
    assert split(argv) == line


def test_every_flag_with_a_value_has_its_value_skipped_by_the_splitter() -> None:
    """A value that looks like a command or a script never becomes one, whichever command the flag is for."""
    for flag in FLAGS:
        if flag.metavar is not None:
            for name in flag.names:
                assert split([name, "doctor", "fix.py"]) == Line([name, "doctor"], script="fix.py"), name


@pytest.mark.parametrize(
    ("argv", "project"),
    [
        (["--project", "p", "-c", "1"], "p"),
        (["--project=p", "doctor"], "p"),
        (["doctor", "--project", "p"], "p"),  # a command's own options are its options wherever they stand
        (["audit", "tail", "--project", "q"], "q"),
        (["-c", "1", "--project", "p"], None),  # the program's ARGS, not appshell's
        (["fix.py", "--project", "p"], None),
        (["--reason", "--project", "-c", "1"], None),  # a value
        (["--reason", "--project", "--sandbox", "doctor"], None),
    ],
)
def test_project_is_read_where_the_options_are(argv: list[str], project: str | None) -> None:
    """Re-exec looks for the project's .venv before parsing: it reads --project where the parser will."""
    assert project_of(split(argv)) == project


# -- global flags before a command ----------------------------------------------------------------


def _doctor_rows(result: Result) -> dict[str, tuple[str, str]]:
    assert result.stdout.startswith("{"), result.output
    return {row["check"]: (row["status"], row["detail"]) for row in json.loads(result.stdout)["checks"]}


# (argv: the same request with its flags before and after "doctor"; the row it changes, and how)
DOCTOR_ROWS = [
    (["-q", "--json", "doctor"], ["doctor", "-q", "--json"], "setting app", "'shop.db' (from pyproject)"),
    (
        ["--app", "nosuch", "--json", "doctor"],
        ["doctor", "--json", "--app", "nosuch"],
        "app",
        "cannot import --app module 'nosuch'",
    ),
    (
        ["--profile", "staging", "--json", "doctor"],
        ["--json", "doctor", "--profile", "staging"],
        "setting profile",
        "'staging' (from flag)",
    ),
    (
        ["--database-url", "sqlite:///other.db", "--json", "doctor"],
        ["doctor", "--database-url", "sqlite:///other.db", "--json"],
        "setting database_url",
        "'sqlite:///other.db' (from flag)",
    ),
    (
        ["--env-file", "other.env", "--json", "doctor"],
        ["doctor", "--json", "--env-file", "other.env"],
        "setting env_file",
        "'other.env' (from flag)",
    ),
]


@pytest.mark.parametrize(("before", "after", "check", "detail"), DOCTOR_ROWS, ids=[" ".join(r[0]) for r in DOCTOR_ROWS])
def test_doctor_takes_its_flags_before_or_after_its_name(
    shop: Path, before: list[str], after: list[str], check: str, detail: str
) -> None:
    (shop / "other.env").write_text("APPSHELL_REASON=from other.env\n")
    rows = _doctor_rows(run(before, cwd=shop))
    assert rows[check][1].startswith(detail), rows[check]
    assert _doctor_rows(run(after, cwd=shop))[check] == rows[check]


def test_project_before_profiles_names_the_project(shop: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for argv in (["--project", str(shop), "profiles"], ["profiles", "--project", str(shop)]):
        result = run(argv, cwd=elsewhere)
        assert result.exit_code == 0, result.output
        assert "production — shop production: read-only unless --write" in result.stdout


@pytest.fixture
def recorded(shop: Path) -> Path:
    """The shop with one session recorded under profile 'rec', whose audit.path is var/rec.jsonl (not the default)."""
    (shop / "profiles" / "rec.toml").write_text(
        'description = "a profile with its own log"\n[audit]\npath = "var/rec.jsonl"\n'
    )
    assert run(["--profile", "rec", "-c", "print(count(Customer))"], cwd=shop).exit_code == 0
    assert (shop / "var" / "rec.jsonl").is_file() and not (shop / ".appshell" / "audit.jsonl").exists()
    return shop


@pytest.mark.parametrize(
    "argv",
    [
        ["--profile", "rec", "audit", "tail"],
        ["audit", "--profile", "rec", "tail"],
        ["audit", "tail", "--profile", "rec"],
        ["-q", "--profile", "rec", "audit", "-n", "1", "tail"],
        ["--audit-log", "var/rec.jsonl", "audit", "tail"],  # relative to the project, as the shell writes it
        ["audit", "tail", "--log", "var/rec.jsonl"],  # relative to here
        ["--log", "var/rec.jsonl", "audit", "tail"],
    ],
)
def test_audit_reads_the_log_the_profile_or_flag_names(recorded: Path, argv: list[str]) -> None:
    result = run(argv, cwd=recorded)
    assert result.exit_code == 0, result.output
    assert _session_id(recorded / "var" / "rec.jsonl") in result.stdout, (
        result.stdout
    )  # the one session, in a table of any width


def test_audit_without_the_profile_looks_where_the_default_profile_writes(recorded: Path) -> None:
    result = run(["audit", "tail"], cwd=recorded)
    assert result.exit_code == 2 and result.stderr.startswith(
        f"appshell: error: no audit log at {recorded / '.appshell' / 'audit.jsonl'}"
    )


def test_the_environment_names_the_profile_for_audit_too(recorded: Path) -> None:
    assert run(["audit", "tail"], cwd=recorded, env={"APPSHELL_PROFILE": "rec"}).exit_code == 0


# -- every audit verb, its flags anywhere -----------------------------------------------------------


def _session_id(log: Path) -> str:
    return str(json.loads(log.read_text().splitlines()[0])["session"])


# (verb with its arguments, the flag and its value, what the output starts with or holds)
AUDIT_VERBS: list[tuple[list[str], list[str], str]] = [
    (["tail"], ["-n", "5"], "session"),
    (["verify"], [], "ok: "),
    (["show", "SESSION"], [], "print(count(Customer))"),
    (["serve"], [], "appshell: error: no auditor could log in"),  # the log was found: serve went as far as the auditors
]


@pytest.mark.parametrize(("verb", "flags", "expected"), AUDIT_VERBS, ids=[v[0][0] for v in AUDIT_VERBS])
def test_every_audit_verb_takes_its_flags_before_or_after_it(
    recorded: Path, verb: list[str], flags: list[str], expected: str
) -> None:
    log = recorded / "var" / "rec.jsonl"
    verb = [_session_id(log) if word == "SESSION" else word for word in verb]
    where = ["--log", str(log), *flags]
    outputs = set()
    for argv in (
        ["audit", *where, *verb],
        ["audit", *verb, *where],
        ["audit", verb[0], *where, *verb[1:]],
        [*where[:2], "audit", *verb, *where[2:]],
    ):
        result = run(argv, cwd=recorded)
        assert expected in result.output, (argv, result.output)
        outputs.add((result.exit_code, result.stdout, result.stderr))
    assert len(outputs) == 1, outputs  # the same answer wherever the flags stand


def test_serve_with_its_log_before_the_verb_reaches_the_page(recorded: Path) -> None:
    """`appshell audit --log x serve` answered 'audit show needs a session id'."""
    pytest.importorskip("starlette")
    from appshell.cli.command_line import parser
    from appshell.cli.review_web.cli import build_config

    log = recorded / "var" / "rec.jsonl"
    opts = parser("audit serve").parse_args(["--log", str(log), "--port", "9999"])
    assert (opts.host, opts.port, opts.log) == ("127.0.0.1", 9999, str(log))
    assert build_config(opts, TOKENS).log.path == log
    missing = run(["audit", "--log", str(recorded / "none.jsonl"), "serve"], cwd=recorded, env=TOKENS)
    assert missing.exit_code == 2 and missing.stderr.startswith("appshell: error: no audit log at"), missing.output


def test_the_key_is_read_wherever_it_stands(tmp_path: Path, shop: Path) -> None:
    log = tmp_path / "sealed.jsonl"
    init = run(["audit", "--log", str(log), "init"], cwd=shop)
    assert init.exit_code == 0, init.output
    key = init.stdout.split("verification key (shown once, keep it off this host): ")[1].split()[0]
    assert run(["--audit-log", str(log), "-c", "1"], cwd=shop).exit_code == 0
    for argv in (
        ["audit", "--key", key, "--log", str(log), "verify"],
        ["audit", "verify", "--log", str(log), "--key", key],
        ["--log", str(log), "audit", "verify", "--key", key],
    ):
        result = run(argv, cwd=shop)
        assert result.exit_code == 0 and result.stdout.startswith("ok: ") and "seal" in result.stdout, (
            argv,
            result.output,
        )
    assert (
        run(["audit", "verify", "--log", str(log)], cwd=shop, env={"APPSHELL_AUDIT_KEY": key}).stdout
        == run(["audit", "--key", key, "verify", "--log", str(log)], cwd=shop).stdout
    )


# -- a flag where it means nothing: one line, where it goes ---------------------------------------

ERR = "appshell: error: "
# (argv, the one line on stderr)
MISPLACED: list[tuple[list[str], str]] = [
    (["-y", "doctor"], "-y/--yes means nothing to appshell doctor — use it with a session (the shell, -c, SCRIPT)"),
    (["doctor", "--yes"], "-y/--yes means nothing to appshell doctor — use it with a session (the shell, -c, SCRIPT)"),
    (
        ["--sandbox", "audit", "tail"],
        "--sandbox means nothing to appshell audit tail — use it "
        "with a session (the shell, -c, SCRIPT) or appshell doctor",
    ),
    (
        ["audit", "tail", "--write"],
        "--write means nothing to appshell audit tail — use it "
        "with a session (the shell, -c, SCRIPT) or appshell doctor",
    ),
    (
        ["--database-url", "sqlite://", "audit", "verify"],
        "--database-url means nothing to appshell audit verify — use "
        "it with a session (the shell, -c, SCRIPT) or appshell doctor",
    ),
    (
        ["--app", "shop.db", "profiles"],
        "--app means nothing to appshell profiles — use it with a session (the shell, -c, SCRIPT) or appshell doctor",
    ),
    (
        ["--json", "profiles"],
        "--json means nothing to appshell profiles — use it with a session (the shell, -c, SCRIPT) or appshell doctor",
    ),
    (
        ["--log", "x", "-c", "1"],
        "--log means nothing to a session (the shell, -c, SCRIPT) — use it with appshell audit",
    ),
    (["--port", "80", "doctor"], "--port means nothing to appshell doctor — use it with appshell audit serve"),
    (
        ["audit", "verify", "--host", "0.0.0.0"],
        "--host means nothing to appshell audit verify — use it with appshell audit serve",
    ),
    (["audit", "-n", "3", "show", "abc"], "-n means nothing to appshell audit show — use it with appshell audit tail"),
    (
        ["audit", "--url", "sqlite://", "init"],
        "--url means nothing to appshell audit init — use it with appshell audit verify|tail|show|serve",
    ),
    (
        ["audit", "rotate", "--key", "k"],
        "--key means nothing to appshell audit rotate — use it with appshell audit verify|serve",
    ),
    (
        ["audit", "--log", "a", "--url", "sqlite://", "tail"],
        "argument --url: not allowed with argument --log — see appshell audit tail --help",
    ),
    (
        ["--log", "a", "--audit-log", "b", "audit", "tail"],
        "--log and --audit-log both name the audit file — give one of them",
    ),
    (
        ["audit", "verify", "--url", "sqlite://", "--key", "k"],
        "--key, --witness and --checkpoint check a file, not an SQL sink's table (--url)",
    ),
    (["audit"], "appshell audit needs a verb — use appshell audit init|verify|tail|show|rotate|serve"),
    (["-q", "audit", "--log", "x"], "appshell audit needs a verb"),
    (
        ["audit", "taill"],
        "unknown audit command 'taill' (did you mean 'tail'?) — use appshell audit init|verify|tail|show|rotate|serve",
    ),
    (["audit", "show", "--log", "x"], "audit show needs a session id — see appshell audit tail for the ids"),
    (["doctor", "extra"], "unrecognized arguments: extra — see appshell doctor --help"),
    (
        ["--prof", "staging", "-c", "1"],
        "unrecognized arguments: --prof",
    ),  # no abbreviations: the splitter knows whole names only
]


@pytest.mark.parametrize(("argv", "message"), MISPLACED, ids=[" ".join(a) for a, _ in MISPLACED])
def test_a_flag_where_it_means_nothing_is_one_line_saying_where_it_goes(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    result = run(argv, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(ERR + message) and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


# -- a script named like a command ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "ran"),
    [
        (["doctor.py"], "script"),
        (["./doctor"], "script"),
        (["--", "doctor"], "script"),
        (["-q", "--", "doctor", "x"], "script"),
        (["-q", "doctor.py"], "script"),
        (["doctor"], "doctor"),  # the word alone is the command, whatever files lie about
        (["-q", "doctor"], "doctor"),
    ],
)
def test_a_script_named_like_a_command(shop: Path, argv: list[str], ran: str) -> None:
    for name in ("doctor", "doctor.py"):
        (shop / name).write_text("import sys\nprint('the script ran', sys.argv)\n")
    result = run(argv, cwd=shop)
    assert result.exit_code == 0, result.output
    if ran == "script":
        assert result.stdout.startswith("the script ran") and "interpreter" not in result.stdout, result.output
    else:
        assert "the script ran" not in result.stdout and "interpreter" in result.stdout


# -- --help: each command's own, fast, even where the app cannot boot -------------------------------


@pytest.mark.parametrize(
    ("argv", "usage", "shown", "hidden"),
    [
        (
            ["--app", "nosuch", "--help"],
            "usage: appshell [-h]",
            ["--sandbox", "-y, --yes", "modes:"],
            ["-n N", "--tokens-file"],
        ),
        (["--app", "nosuch", "doctor", "--help"], "usage: appshell doctor", ["--app", "--json"], ["--yes", "--host"]),
        (["-q", "profiles", "-h"], "usage: appshell profiles", ["--project"], ["--app", "--sandbox"]),
        (
            ["audit", "--help"],
            "usage: appshell audit",
            ["VERB", "with serve: port", "with tail: how many", "--profile"],
            ["--sandbox", "--app"],
        ),
        (
            ["audit", "--log", "x", "serve", "--help"],
            "usage: appshell audit serve",
            ["--port", "--key", "--reviews"],
            ["-n N", "--witness"],
        ),
        (
            ["--profile", "rec", "audit", "tail", "-h"],
            "usage: appshell audit tail",
            ["-n N", "--profile"],
            ["--port", "--key"],
        ),
    ],
)
def test_help_is_each_commands_own(
    tmp_path: Path, argv: list[str], usage: str, shown: list[str], hidden: list[str]
) -> None:
    result = run(argv, cwd=tmp_path)
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout.startswith(usage)
    assert all(s in result.stdout for s in shown), [s for s in shown if s not in result.stdout]
    assert not any(h in result.stdout for h in hidden), [h for h in hidden if h in result.stdout]


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    import subprocess
    import sys

    from support.environment import clean_environ

    code = (
        "import sys; from appshell.cli.main import main\n"
        "for argv in (['--help'], ['doctor', '--help'], ['audit', 'serve', '--help']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('sqlalchemy', 'IPython', 'ptpython', 'starlette', 'appshell.runtime.session', "
        "'appshell.cli.doctor') if m in sys.modules),"
        " file=sys.stderr)"
    )
    err = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=clean_environ(), check=True
    ).stderr
    assert err.strip() == "[]"


def test_every_audit_verb_is_declared_once() -> None:
    """The verbs' list (command_line.VERBS) gives the parsers,
    --help's list and the dispatch: none without the others."""
    from appshell.cli.command_line import VERB_HELP, VERBS
    from appshell.cli.main import AUDIT_VERBS

    assert tuple(AUDIT_VERBS) == tuple(VERB_HELP) == VERBS
    assert all(any(f"audit {verb}" in flag.takes for flag in FLAGS if flag.dest == "log") for verb in VERBS)
