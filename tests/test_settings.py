"""Settings precedence: one parametrised table, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from appshell.config.profiles import load_profile
from appshell.config.settings import LAYERS, export_environment, find_project_root, resolve
from appshell.errors import ConfigError


def make_project(tmp_path: Path, pyproject: str = "", dotenv: str = "", profile: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.appshell]\n" + pyproject)
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    if profile:
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles" / "development.toml").write_text(profile)
    return tmp_path


# (layers present, expected value of `shell`, expected source). Each row sets
# `shell` in the named layers with the layer's own name as the value.
SHELL_BY_LAYER = {"flag": "python", "env": "ptpython", ".env": "ipython", "profile": "python", "pyproject": "ptpython"}
ROWS = [
    ({"flag", "env", ".env", "profile", "pyproject"}, "flag"),
    ({"env", ".env", "profile", "pyproject"}, "env"),
    ({".env", "profile", "pyproject"}, ".env"),
    ({"profile", "pyproject"}, "profile"),
    ({"pyproject"}, "pyproject"),
    (set(), "default"),
]


@pytest.mark.parametrize(("present", "winner"), ROWS)
def test_precedence_table(tmp_path: Path, present: set[str], winner: str) -> None:
    root = make_project(
        tmp_path,
        pyproject=f'shell = "{SHELL_BY_LAYER["pyproject"]}"\n' if "pyproject" in present else "",
        dotenv=f"APPSHELL_SHELL={SHELL_BY_LAYER['.env']}\n" if ".env" in present else "",
        profile=f'[shell]\ndefault = "{SHELL_BY_LAYER["profile"]}"\n' if "profile" in present else "",
    )
    flags = {"shell": SHELL_BY_LAYER["flag"]} if "flag" in present else {}
    environ = {"APPSHELL_SHELL": SHELL_BY_LAYER["env"]} if "env" in present else {}
    settings = resolve(flags, environ=environ, cwd=root)
    assert settings.sources["shell"] == winner
    assert settings.shell == (SHELL_BY_LAYER[winner] if winner != "default" else "auto")


def test_help_and_docs_state_the_order_resolve_uses() -> None:
    """The order is written once (LAYERS); --help and docs/configuration.md must say the same."""
    import re

    from appshell.cli.main import build_parser

    assert " > ".join(LAYERS) in build_parser().format_help()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    listed = re.findall(r"^\d\. (.+)$", doc.split("## Where settings come from", 1)[1].split("\n\n|", 1)[0], re.M)
    words = {
        "flag": "command-line flag",
        "env": "environment variable",
        ".env": "`.env` file",
        "profile": "profile",
        "pyproject": "pyproject.toml",
        "default": "defaults",
    }
    assert len(listed) == len(LAYERS)
    for layer, line in zip(LAYERS, listed, strict=True):
        assert words[layer] in line, (layer, line)


def test_dotenv_selects_the_profile_and_never_overrides_real_environment(tmp_path: Path) -> None:
    root = make_project(tmp_path, dotenv="APPSHELL_PROFILE=staging\nDATABASE_URL=sqlite:///dotenv.db\nSHOP_TOKEN=abc\n")
    settings = resolve({}, environ={"DATABASE_URL": "sqlite:///real.db"}, cwd=root)
    assert settings.profile.name == "staging" and settings.sources["profile"] == ".env"
    assert settings.database_url == "sqlite:///real.db" and settings.sources["database_url"] == "env"
    environ = {"DATABASE_URL": "sqlite:///real.db"}
    export_environment(settings, environ)
    assert environ == {"DATABASE_URL": "sqlite:///real.db", "APPSHELL_PROFILE": "staging", "SHOP_TOKEN": "abc"}


def test_database_url_flag_is_exported_for_the_app(tmp_path: Path) -> None:
    settings = resolve(
        {"database_url": "sqlite:///flag.db"}, environ={"DATABASE_URL": "sqlite:///env.db"}, cwd=make_project(tmp_path)
    )
    environ = {"DATABASE_URL": "sqlite:///env.db"}
    export_environment(settings, environ)
    assert environ["DATABASE_URL"] == "sqlite:///flag.db"


def test_models_list_from_environment_and_pyproject(tmp_path: Path) -> None:
    root = make_project(tmp_path, pyproject='models = ["a.models", "b.models"]\n')
    assert resolve({}, environ={}, cwd=root).models == ("a.models", "b.models")
    assert resolve({}, environ={"APPSHELL_MODELS": "x, y"}, cwd=root).models == ("x", "y")


def test_project_root_found_upward(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == root
    assert resolve({}, environ={}, cwd=deep).project_root == root


def test_project_root_by_profiles_folder(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    assert find_project_root(tmp_path) == tmp_path


def test_project_profile_merges_over_shipped(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "profiles").mkdir()
    (root / "profiles" / "production.toml").write_text('[shell]\nprompt = "shop-prod"\n')
    profile = load_profile("production", root)
    assert profile.shell.prompt == "shop-prod"
    assert profile.database.read_only is True  # still the shipped value
    assert profile.access.require_reason is True


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[shell]\ncolour = "red"\n', "unknown key 'shell.colour'"),
        ('[shell]\ncolor = "pink"\n', 'use one of "none", "red"'),
        ("[database]\nread_only = 1\n", "use true or false"),
        ('[audit]\nsinks = ["file", "kafka"]\n', 'a list of "file", "sql", "syslog"'),
        ('[audit]\nredact = ["(unclosed"]\n', "valid regular expressions"),
        ("[database]\nstatement_timeout_ms = -5\n", "milliseconds"),
    ],
)
def test_bad_profile_values_name_file_key_and_allowed(tmp_path: Path, text: str, needle: str) -> None:
    root = make_project(tmp_path, profile=text)
    with pytest.raises(ConfigError) as info:
        resolve({}, environ={}, cwd=root)
    message = info.value.format()
    assert "development.toml" in message and needle in message


# -- audit settings belong to the profile (audit.locked) -------------------------------------


def locked_project(tmp_path: Path, dotenv: str = "", audit: str = "") -> Path:
    root = make_project(tmp_path, dotenv=dotenv)
    (root / "profiles").mkdir()
    (root / "profiles" / "prod.toml").write_text(f'[audit]\nlocked = true\npath = "/srv/audit.jsonl"\n{audit}')
    return root


# (flags, environment, .env, the option and the layer named in the error)
LOCK_ROWS = [
    ({"audit_log": "/tmp/x.jsonl"}, {}, "", "--audit-log"),
    ({}, {"APPSHELL_AUDIT_LOG": "/tmp/x.jsonl"}, "", "APPSHELL_AUDIT_LOG"),
    ({}, {}, "APPSHELL_AUDIT_LOG=/tmp/x.jsonl\n", "APPSHELL_AUDIT_LOG in "),
    ({}, {"APPSHELL_AUDIT_URL": "sqlite:////tmp/elsewhere.db"}, "", "APPSHELL_AUDIT_URL"),
    ({}, {}, "APPSHELL_AUDIT_URL=sqlite:////tmp/elsewhere.db\n", "APPSHELL_AUDIT_URL in "),
    ({}, {"APPSHELL_SYSLOG_ADDRESS": "127.0.0.1:9"}, "", "APPSHELL_SYSLOG_ADDRESS"),
]


@pytest.mark.parametrize(("flags", "environ", "dotenv", "named"), LOCK_ROWS)
def test_locked_profile_refuses_audit_overrides(
    tmp_path: Path, flags: dict[str, str], environ: dict[str, str], dotenv: str, named: str
) -> None:
    root = locked_project(tmp_path, dotenv=dotenv)
    with pytest.raises(ConfigError) as info:
        resolve({**flags, "profile": "prod"}, environ=environ, cwd=root)
    message = info.value.format()
    assert (
        message.startswith(f"appshell: error: {named}") and "profile 'prod' locks them (audit.locked = true)" in message
    )
    assert "profiles/prod.toml" in message and "\n" not in message
    # doctor resolves without raising: the profile's values stand, the problem is listed
    settings = resolve({**flags, "profile": "prod"}, environ=environ, cwd=root, strict=False)
    assert settings.audit_log == "/srv/audit.jsonl" and settings.audit_url is None and settings.audit_syslog is None
    assert [p.format() for p in settings.audit_problems] == [message]


def test_unlocked_profile_lets_flags_and_environment_choose(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    environ = {"APPSHELL_AUDIT_URL": "sqlite:////tmp/a.db", "APPSHELL_SYSLOG_ADDRESS": "127.0.0.1:9"}
    settings = resolve({"audit_log": "/tmp/x.jsonl"}, environ=environ, cwd=root)
    assert (settings.audit_log, settings.audit_url, settings.audit_syslog) == (
        "/tmp/x.jsonl",
        "sqlite:////tmp/a.db",
        "127.0.0.1:9",
    )


def test_shipped_production_profile_is_locked(tmp_path: Path) -> None:
    assert load_profile("production", None).audit.locked is True
    with pytest.raises(ConfigError, match="--audit-log cannot change the audit settings: profile 'production'"):
        resolve({"profile": "production", "audit_log": "/tmp/x.jsonl"}, environ={}, cwd=make_project(tmp_path))


def test_locked_profile_gives_the_sinks_its_own_addresses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sinks read their addresses from the settings (no detour through os.environ): under audit.locked the
    profile's, whatever the operator exported; the URL's ${NAME} password from the environment."""
    from appshell.audit.auditor import audit_url, syslog_address

    root = locked_project(
        tmp_path, audit='url = "postgresql+psycopg://writer:${AUDIT_PW}@db/app"\nsyslog_address = "10.0.0.5:514"\n'
    )
    environ = {"APPSHELL_SYSLOG_ADDRESS": "127.0.0.1:9", "APPSHELL_AUDIT_URL": "sqlite://", "AUDIT_PW": "p/ss#w?rd"}
    settings = resolve({"profile": "prod"}, environ=environ, cwd=root, strict=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert syslog_address(settings) == "10.0.0.5:514"
    from sqlalchemy.engine import make_url

    url = make_url(audit_url(settings, "sqlite:///app.db"))
    assert (url.username, url.password, url.host, url.database) == ("writer", "p/ss#w?rd", "db", "app")
    export_environment(settings, environ)
    assert environ["APPSHELL_AUDIT_URL"] == "sqlite://"  # not written back: nothing reads it from there


def test_audit_url_password_variable_must_be_set(tmp_path: Path) -> None:
    root = locked_project(tmp_path, audit='url = "postgresql+psycopg://writer:${AUDIT_PW}@db/app"\n')
    settings = resolve({"profile": "prod"}, environ={}, cwd=root)
    with pytest.raises(ConfigError, match=r"\$\{AUDIT_PW\}, which is not set"):
        export_environment(settings, {})


def test_required_audit_without_sinks_is_a_config_error(tmp_path: Path) -> None:
    root = make_project(tmp_path, profile="[audit]\nsinks = []\nrequired = true\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, environ={}, cwd=root)
    assert info.value.format() == (
        "appshell: error: profile 'development' requires the audit "
        "(audit.required = true) but names no sink (audit.sinks = [])"
        ' — set audit.sinks in profiles/development.toml (e.g. ["file"]), or audit.required = false'
    )
    assert len(resolve({}, environ={}, cwd=root, strict=False).audit_problems) == 1


# (locked, env file chosen by, .env, environment, values the audit may mask)
REDACTION_ROWS = [
    (False, None, "APP_TOKEN=tok-dotenv-1\n", {"OP_TOKEN": "tok-env-2"}, {"tok-dotenv-1", "tok-env-2"}),
    (True, None, "APP_TOKEN=tok-dotenv-1\n", {"OP_TOKEN": "tok-env-2"}, {"tok-dotenv-1"}),
    (True, "flag", "APP_TOKEN=tok-dotenv-1\n", {}, set()),
]


@pytest.mark.parametrize(("locked", "env_file_by", "dotenv", "environ", "masked"), REDACTION_ROWS)
def test_redaction_sources(
    tmp_path: Path, locked: bool, env_file_by: str | None, dotenv: str, environ: dict[str, str], masked: set[str]
) -> None:
    from appshell.config.settings import session_redactor

    root = make_project(tmp_path, dotenv=dotenv, profile=f"[audit]\nlocked = {str(locked).lower()}\n")
    flags = {"env_file": str(root / ".env")} if env_file_by == "flag" else {}
    settings = resolve(flags, environ=environ, cwd=root)
    assert set(session_redactor(settings, environ).secrets) == masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://writer:s3cret-pw@db/app",
        "postgresql+psycopg://writer@db/app?password=s3cret-pw",
        "not a url",
    ],
)
def test_profile_audit_url_cannot_hold_a_password(tmp_path: Path, url: str) -> None:
    root = make_project(tmp_path, profile=f'[audit]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        resolve({}, environ={}, cwd=root)
    message = info.value.format()
    assert "'audit.url'" in message and 'written "${NAME}"' in message and "s3cret" not in message


@pytest.mark.parametrize(
    ("flags", "environ", "dotenv", "fix"),
    [
        ({"audit_log": "/tmp/x.jsonl"}, {}, "", "drop --audit-log, or change audit.path in profiles/prod.toml"),
        (
            {},
            {"APPSHELL_AUDIT_LOG": "/tmp/x.jsonl"},
            "",
            "unset APPSHELL_AUDIT_LOG, or change audit.path in profiles/prod.toml",
        ),
        (
            {},
            {},
            "APPSHELL_SYSLOG_ADDRESS=127.0.0.1:9\n",
            "remove APPSHELL_SYSLOG_ADDRESS from {root}/.env, or change audit.syslog_address in profiles/prod.toml",
        ),
    ],
)
def test_lock_error_says_how_to_undo_each_layer(
    tmp_path: Path, flags: dict[str, str], environ: dict[str, str], dotenv: str, fix: str
) -> None:
    root = locked_project(tmp_path, dotenv=dotenv)
    with pytest.raises(ConfigError) as info:
        resolve({**flags, "profile": "prod"}, environ=environ, cwd=root)
    assert info.value.fix == fix.format(root=root)


# -- one option table, many views -------------------------------------------------------

from appshell.cli.main import split_argv
from appshell.config.settings import OPTIONS


@pytest.mark.parametrize(
    ("argv", "options", "command", "script", "args"),
    [
        ([], [], None, None, []),
        (["-c", "print(1)", "a", "b"], [], "print(1)", None, ["a", "b"]),
        (["-cprint(1)"], [], "print(1)", None, []),
        (["--profile", "staging", "fix.py", "--dry-run"], ["--profile", "staging"], None, "fix.py", ["--dry-run"]),
        (["--sandbox", "fix.py"], ["--sandbox"], None, "fix.py", []),
        (["--reason", "fix.py", "-c", "1"], ["--reason", "fix.py"], "1", None, []),  # a value that looks like a script
        (["--models", "a.b", "--models", "c", "-"], ["--models", "a.b", "--models", "c"], None, "-", []),
        (["--", "-weird.py", "x"], [], None, "-weird.py", ["x"]),
        (
            ["-q", "--json", "-c", "x", "--profile"],
            ["-q", "--json"],
            "x",
            None,
            ["--profile"],
        ),  # after -c: the program's
    ],
)
def test_split_argv(
    argv: list[str], options: list[str], command: str | None, script: str | None, args: list[str]
) -> None:
    assert split_argv(argv) == (options, command, script, args)


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.flag and o.kind != "bool"], ids=lambda o: o.name)
def test_every_valued_flag_takes_its_value_before_the_script(option: object) -> None:
    """The trap a hand-kept list of valued options was: `appshell --newopt X fix.py` ran X."""
    flag = option.flag  # type: ignore[attr-defined]
    assert split_argv([flag, "X", "fix.py"]) == ([flag, "X"], None, "fix.py", [])


def test_the_docs_table_lists_every_option_as_the_table_declares_it() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "|---" not in line]
    for option in OPTIONS:
        row = next(
            (
                r
                for r in rows
                if (option.flag and f"`{option.flag}" in r.split("|")[1])
                or (not option.flag and option.env and f"`{option.env}`" in r.split("|")[2])
            ),
            None,
        )
        assert row is not None, f"{option.name} is missing from docs/configuration.md's table"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert (option.env or "") in cells[1] and (not option.env or cells[1]), (option.name, cells)
        assert cells[2] == (f"`{option.pyproject}`" if option.pyproject else ""), (option.name, cells)
        assert cells[3] == (f"`{option.profile}`" if option.profile else ""), (option.name, cells)
