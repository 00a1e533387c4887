"""Issue 13 items 3 and 6: Flask's idioms and discovery as `python` and Flask users expect it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def json_of(cwd: Path, env: dict[str, str], code: str, *args: str) -> object:
    result = run([*args, "--json", "-c", code], cwd=cwd, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- item 3: Flask -----------------------------------------------------------------------------


def test_flask_factory_with_arguments_and_shell_context(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("flaskfactory")  # pyproject: app = "flaskfactory:create_app('testing')"
    code = (
        "db.create_all(); metadata.create_all(engine); "
        "[app.config['CONFIG_NAME'], config_name, Legacy.__name__, 'g' in globals(), count(LegacyUser), count(Gadget)]"
    )
    assert json_of(root, {"DATABASE_URL": sqlite_url}, code) == ["testing", "testing", "LegacyUser", True, 0, 0]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("flaskfactory:create_app('prod')", ["prod", False]),
        ("flaskfactory:create_app('prod', debug=True)", ["prod", False]),
        ('flaskfactory:create_app(config_name="staging")', ["staging", False]),
    ],
)
def test_flask_app_spec_with_literal_arguments(
    app_dir: Callable[[str], Path], sqlite_url: str, spec: str, expected: list[object]
) -> None:
    root = app_dir("flaskfactory")
    assert json_of(root, {"DATABASE_URL": sqlite_url}, "[config_name, app.debug]", "--app", spec) == expected


@pytest.mark.parametrize("spec", ["flaskfactory:create_app", "flaskfactory:create_app()"])
def test_flask_factory_needing_arguments_is_a_one_line_error(
    app_dir: Callable[[str], Path], sqlite_url: str, spec: str
) -> None:
    result = run(["--app", spec, "-c", "1"], cwd=app_dir("flaskfactory"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 2
    assert result.stderr == (
        "appshell: error: flaskfactory:create_app() cannot be called "
        "with no arguments (missing a required argument: 'config_name')"
        " — pass its arguments in --app, as Flask does: --app \"flaskfactory:create_app('config_name')\"\n"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flaskfactory:create_app(os.environ)", "cannot read 'create_app(os.environ)'"),
        ("flaskfactory:create_app(", "cannot read 'create_app('"),
        ("flaskfactory:db()", "flaskfactory:db is not callable"),
    ],
)
def test_bad_app_spec_says_what_to_write(
    app_dir: Callable[[str], Path], sqlite_url: str, spec: str, message: str
) -> None:
    result = run(["--app", spec, "-c", "1"], cwd=app_dir("flaskfactory"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_models_on_another_base_are_found_and_metadata_covers_them(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("flaskfactory")
    code = (
        "metadata.create_all(engine); "
        "[sorted(metadata.tables), sorted(k for k in globals() if k.startswith(('Legacy', 'Gadget')))]"
    )
    found = json_of(root, {"DATABASE_URL": db_url}, code)
    assert found == [["ab_role", "ab_user", "gadget"], ["Gadget", "Legacy", "LegacyRole", "LegacyUser"]]


# --- item 6: discovery ------------------------------------------------------------------------


def test_working_directory_is_on_sys_path_without_a_marker_file(
    app_dir: Callable[[str], Path], sqlite_url: str
) -> None:
    root = app_dir("discovery")  # no pyproject.toml, no profiles/: as `python -c` would, the cwd imports
    assert not (root / "pyproject.toml").exists()
    assert json_of(
        root,
        {"DATABASE_URL": sqlite_url},
        "[count(Probe), engine.url.database.endswith('test.db')]",
        "--app",
        "discovery:just_engine",
    ) == [0, True]


def test_src_layout_is_found(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("srcapp")
    assert json_of(
        root, {"DATABASE_URL": sqlite_url}, "metadata.create_all(engine); [Planet.__module__, count(Planet)]"
    ) == ["srcapp.models", 0]
    # ... from a subfolder too, where the project root is found upward
    assert json_of(root / "src", {"DATABASE_URL": sqlite_url}, "Planet.__name__") == "Planet"


def test_two_engines_is_an_error_naming_both(app_dir: Callable[[str], Path], tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "REPORTING_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    result = run(["--app", "discovery:two_engines", "-c", "1"], cwd=app_dir("discovery"), env=env)
    assert result.exit_code == 2
    assert result.stderr == (
        f"appshell: error: the app has 2 engines: the provider's 'primary' (sqlite:///{tmp_path / 'a.db'}), "
        f"the provider's 'reporting' (sqlite:///{tmp_path / 'b.db'}) — name the one the shell should use `engine` "
        "in the --app provider (or return {'engine': …} from it)\n"
    )


def test_the_engine_named_engine_wins_over_others(app_dir: Callable[[str], Path], tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "REPORTING_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    found = json_of(
        app_dir("discovery"),
        env,
        "[engine.url.database.rsplit('/', 1)[-1], reporting.url.database.rsplit('/', 1)[-1]]",
        "--app",
        "discovery:two_engines_one_named",
    )
    assert found == ["a.db", "b.db"]


@pytest.mark.parametrize("provider", ["discovery:just_engine", "discovery:just_sessionmaker"])
def test_a_provider_returning_an_engine_or_sessionmaker_is_used_not_spilled(
    app_dir: Callable[[str], Path], tmp_path: Path, provider: str
) -> None:
    # DATABASE_URL names the provider's database; the shell must use the provider's engine, not one of its own.
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    code = (
        "session.add(Probe(label='x')); commit(); [count(Probe), engine.url.database.rsplit('/', 1)[-1], "
        "[n for n in ('pool', 'url', 'dialect', 'kw', 'class_') if n in globals()]]"
    )
    assert json_of(app_dir("discovery"), env, code, "--app", provider) == [1, "app.db", []]


def test_zero_models_is_a_warning(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(
        ["--app", "bare:context", "-c", "print('ran')"], cwd=app_dir("discovery"), env={"DATABASE_URL": sqlite_url}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "ran\n"
    assert (
        "appshell: warning: no mapped classes found in --app bare:context "
        "— pass --models MODULE for the module that defines them\n" in result.stderr
    )


def test_a_crash_inside_a_factory_still_shows_its_traceback(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("flaskfactory")
    (root / "flaskfactory" / "boom.py").write_text(
        textwrap.dedent("""
        def create_app(name):
            raise RuntimeError("config " + name + " is broken")
    """)
    )
    result = run(["--app", "flaskfactory.boom:create_app('x')", "-c", "1"], cwd=root, env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 1
    assert "RuntimeError: config x is broken" in result.stderr and "Traceback" in result.stderr
