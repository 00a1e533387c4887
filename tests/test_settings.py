"""Settings precedence (SPEC §1): one parametrised table, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from appshell.errors import ConfigError
from appshell.profiles import load_profile
from appshell.settings import LAYERS, export_environment, find_project_root, resolve


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
        dotenv=f'APPSHELL_SHELL={SHELL_BY_LAYER[".env"]}\n' if ".env" in present else "",
        profile=f'[shell]\ndefault = "{SHELL_BY_LAYER["profile"]}"\n' if "profile" in present else "",
    )
    flags = {"shell": SHELL_BY_LAYER["flag"]} if "flag" in present else {}
    environ = {"APPSHELL_SHELL": SHELL_BY_LAYER["env"]} if "env" in present else {}
    settings = resolve(flags, environ=environ, cwd=root)
    assert settings.sources["shell"] == winner
    assert settings.shell == (SHELL_BY_LAYER[winner] if winner != "default" else "auto")


def test_layers_are_in_spec_order() -> None:
    assert LAYERS == ("flag", "env", ".env", "profile", "pyproject", "default")


def test_dotenv_selects_the_profile_and_never_overrides_real_environment(tmp_path: Path) -> None:
    root = make_project(tmp_path, dotenv="APPSHELL_PROFILE=staging\nDATABASE_URL=sqlite:///dotenv.db\nSHOP_TOKEN=abc\n")
    settings = resolve({}, environ={"DATABASE_URL": "sqlite:///real.db"}, cwd=root)
    assert settings.profile == "staging" and settings.sources["profile"] == ".env"
    assert settings.database_url == "sqlite:///real.db" and settings.sources["database_url"] == "env"
    environ = {"DATABASE_URL": "sqlite:///real.db"}
    export_environment(settings, environ)
    assert environ == {"DATABASE_URL": "sqlite:///real.db", "APPSHELL_PROFILE": "staging", "SHOP_TOKEN": "abc"}


def test_database_url_flag_is_exported_for_the_app(tmp_path: Path) -> None:
    settings = resolve({"database_url": "sqlite:///flag.db"}, environ={"DATABASE_URL": "sqlite:///env.db"}, cwd=make_project(tmp_path))
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
    assert profile["shell.prompt"] == "shop-prod"
    assert profile["database.read_only"] is True  # still the shipped value
    assert profile["access.require_reason"] is True


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
