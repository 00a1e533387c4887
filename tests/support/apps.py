"""The fixture apps' data: the library (plainapp with two books) on a given database, the asyncapp's titles."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from support.harness import run

__all__ = ["LIBRARY_SETUP", "library_on", "titles"]

LIBRARY_SETUP = textwrap.dedent("""
    metadata.create_all(engine)
    herbert = Author(name="Herbert")
    session.add_all(
        [Book(title="Dune", year=1965, author=herbert), Book(title="Children of Dune", year=1976, author=herbert)]
    )
    commit()
""")


def library_on(app_dir: Callable[[str], Path], url: str) -> tuple[Path, dict[str, str]]:
    """tests/apps/plainapp with two books by one author, on the database at *url*."""
    root = app_dir("plainapp")
    env = {"DATABASE_URL": url}
    assert run(["-c", LIBRARY_SETUP], cwd=root, env=env).exit_code == 0
    return root, env


def titles(root: Path, env: Mapping[str, str]) -> list[str]:
    """The asyncapp's book titles now, read by a fresh session that writes nothing."""
    result = run(
        ["--app", "asyncapp.db", "-c", "import json\nprint(json.dumps(sorted(b.title for b in where(Book))))"],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))
