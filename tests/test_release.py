"""Same release, same environment: release ids, parity, re-exec into the project's venv, doctor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.environment import clean_environ
from support.harness import run
from support.paths import ROOT
from support.processes import shop_web

from appshell.boot.release import git_head, release_id

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-qm", "one")
    return tmp_path


def test_git_head_loose_packed_and_detached(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert git_head(repo) == head
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_head(repo) == head
    (repo / "b.txt").write_text("b")
    git(repo, "add", "b.txt")
    git(repo, "commit", "-qm", "two")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert git_head(repo) == head
    deep = repo / "x" / "y"
    deep.mkdir(parents=True)
    assert git_head(deep) == head


def test_release_precedence(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert release_id(repo, {}) == head[:12]
    assert release_id(repo, {"SOURCE_VERSION": "heroku-sha"}) == "heroku-sha"
    assert release_id(repo, {"SOURCE_VERSION": "heroku-sha", "APPSHELL_RELEASE": "v2"}) == "v2"


def test_release_in_banner_and_audit(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    result = run(["--audit-log", str(log), "-c", "1"], cwd=shop, env={"SOURCE_VERSION": "abc1234def"})
    assert result.exit_code == 0
    assert json.loads(log.read_text().splitlines()[0])["release"] == "abc1234def"


def write_profile(shop: Path, text: str) -> None:
    (shop / "profiles" / "development.toml").write_text(text)


def test_parity_with_a_release_file(shop: Path, tmp_path: Path) -> None:
    published = tmp_path / "web-release"
    published.write_text("v41\n")
    write_profile(shop, f'[release]\nexpected_file = "{published}"\n')
    mismatch = run(["-c", "print('ran')"], cwd=shop, env={"APPSHELL_RELEASE": "v42"})
    assert mismatch.exit_code == 0 and mismatch.stdout == "ran\n"
    assert "WARNING: this console runs release v42, the web process runs v41" in mismatch.stderr
    assert run(["-c", "1"], cwd=shop, env={"APPSHELL_RELEASE": "v41"}).stderr == ""
    write_profile(shop, f'[release]\nexpected_file = "{published}"\non_mismatch = "error"\n')
    refused = run(["-c", "open('ran', 'w')"], cwd=shop, env={"APPSHELL_RELEASE": "v42"})
    assert refused.exit_code == 2 and refused.stderr.startswith("appshell: error: this console runs release v42")
    assert not (shop / "ran").exists()


@pytest.fixture
def web(shop: Path) -> Iterator[int]:
    with shop_web(shop, {"SOURCE_VERSION": "9f8e7d6c5b4a"}) as port:
        yield port


def test_parity_with_the_web_process_url(shop: Path, web: int, tmp_path: Path) -> None:
    write_profile(shop, f'[release]\nexpected_url = "http://127.0.0.1:{web}/release"\n')
    log = tmp_path / "a.jsonl"
    same = run(["--audit-log", str(log), "-c", "1"], cwd=shop, env={"SOURCE_VERSION": "9f8e7d6c5b4a"})
    assert same.exit_code == 0 and same.stderr == ""
    start = json.loads(log.read_text().splitlines()[0])
    assert start["release_parity"] == "match" and start["release_expected"] == "9f8e7d6c5b4a"
    other = run(["-c", "1"], cwd=shop, env={"SOURCE_VERSION": "0000000aaaa"})
    assert "the web process runs 9f8e7d6c5b4a" in other.stderr


# -- re-exec into the project's virtual environment ----------------------------


@pytest.fixture(scope="module")
def project_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, real virtual environment with appshell installed (its dependencies shared by a .pth)."""
    project = tmp_path_factory.mktemp("proj")
    shutil.copytree(
        ROOT / "examples" / "shop", project / "shop", ignore=shutil.ignore_patterns("var", ".appshell", "__pycache__")
    )
    root = project / "shop"
    subprocess.run([sys.executable, "-m", "shop.seed"], cwd=root, env=clean_environ(), check=True, capture_output=True)
    venv = root / ".venv"
    # No pip of its own (ensurepip costs seconds): this environment's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-e",
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    site = next(venv.glob("lib/python*/site-packages"))
    outer_site = next(Path(sys.prefix).glob("lib/python*/site-packages"))
    (site / "zz_shared_deps.pth").write_text(str(outer_site) + "\n")  # SQLAlchemy & co. without a download
    return root


def test_reexec_into_project_venv(project_venv: Path) -> None:
    venv = project_venv / ".venv"
    result = run(["-c", "import sys; print(sys.prefix)"], cwd=project_venv)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(venv)
    assert run(["-c", "raise SystemExit(7)"], cwd=project_venv).exit_code == 7
    piped = run([], cwd=project_venv, input="import sys; print(sys.prefix, count(Customer))\n")
    assert piped.stdout.split() == [str(venv), "20"]


def test_no_reexec_and_loop_guard(project_venv: Path) -> None:
    stay = run(["--no-reexec", "-c", "import sys; print(sys.prefix)"], cwd=project_venv)
    assert stay.stdout.strip() == sys.prefix
    guarded = run(["-c", "import sys; print(sys.prefix)"], cwd=project_venv, env={"APPSHELL_REEXECUTED": "1"})
    assert guarded.stdout.strip() == sys.prefix


def test_appshell_python_names_the_environment(project_venv: Path, shop: Path) -> None:
    result = run(
        ["-c", "import sys; print(sys.prefix)"],
        cwd=shop,
        env={"APPSHELL_PYTHON": str(project_venv / ".venv" / "bin" / "python")},
    )
    assert result.stdout.strip() == str(project_venv / ".venv")


def test_project_venv_without_appshell_is_a_clear_error_whose_command_works(shop: Path) -> None:
    import shlex

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(shop / ".venv")], check=True)
    result = run(["-c", "1"], cwd=shop)
    assert result.exit_code == 2
    assert "does not have appshell installed" in result.stderr and "--no-reexec" in result.stderr
    command = result.stderr.split("install it there: ", 1)[1].rsplit(" — or pass --no-reexec", 1)[0]
    # The hint's command, as printed, installs appshell (--no-deps only keeps the test off the index).
    installed = subprocess.run(
        [*shlex.split(command), "--no-deps", "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr
    assert list((shop / ".venv").glob("lib/python*/site-packages/appshell-*.dist-info"))


# -- doctor ---------------------------------------------------------------------


def test_doctor_all_good(shop: Path) -> None:
    result = run(["doctor"], cwd=shop)
    assert result.exit_code == 0, result.output
    for words in (
        "│ interpreter",
        "│ release",
        "SQLAlchemy 2.",
        "│ setting app          │ info   │ 'shop.db' (from pyproject)",
        "│ database",
        "reachable",
        "│ audit sink file",
        "all checks passed",
    ):
        assert words in result.stdout, words


def test_doctor_json_and_read_only_enforcement(shop: Path) -> None:
    result = run(["doctor", "--read-only", "--json"], cwd=shop)
    assert result.exit_code == 0, result.output
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["read-only"]["status"] == "ok" and checks["read-only"]["detail"] == "PRAGMA query_only = 1"
    assert checks["setting read_only"]["detail"] == "True (from flag)"


def test_doctor_finds_problems(shop: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    result = run(
        ["doctor", "--json", "--audit-log", str(tmp_path / "dir.jsonl")],
        cwd=shop,
        env={"DATABASE_URL": "postgresql+psycopg://u:secretpw@127.0.0.1:1/x"},
    )
    assert result.exit_code == 5
    assert "secretpw" not in result.stdout
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["app"]["status"] == "FAIL" and "cannot connect" in checks["app"]["detail"]
    assert checks["audit sink file"]["status"] == "FAIL"


def test_doctor_release_mismatch_fails(shop: Path, tmp_path: Path) -> None:
    published = tmp_path / "rel"
    published.write_text("v1")
    write_profile(shop, f'[release]\nexpected_file = "{published}"\n')
    result = run(["doctor"], cwd=shop, env={"APPSHELL_RELEASE": "v2"})
    assert result.exit_code == 5 and "release parity" in result.stdout and "FAIL" in result.stdout
