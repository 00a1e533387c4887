"""How much does `appshell -c` cost over an async app's own import and one awaited query?

Copies examples/fastapi (a FastAPI app: pydantic-settings, an AsyncEngine, an
async_sessionmaker, two models) into a temporary folder and seeds it, then runs,
in alternating rounds: a plain script that imports the app's session module and
models and awaits one count in `asyncio.run()`, as a one-off script of the app
would; the same ending with os._exit (as appshell does); and
`appshell -c "print(await session.scalar(…))"` — the same query, awaited on the
app's AsyncSession — with the audit log on (a file sink, fsync per record) and
off. Prints medians and the per-round ratios to the plain scripts (target:
≤ 1.10), in wall-clock and CPU time. aiosqlite by default; --database-url runs it
on another async database (PostgreSQL through asyncpg), which must be empty.

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python bench/bench_async.py [--rounds 11] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_command import bytecode_on, measure, report

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi"

BASELINE = '''
import asyncio
from sqlalchemy import func, select
from app.db.session import SessionLocal, engine
from app.models import Note


async def main():
    async with SessionLocal() as db:
        print(await db.scalar(select(func.count()).select_from(Note)))
    await engine.dispose()


asyncio.run(main())
'''

# appshell ends with os._exit once the audit session has ended: this baseline skips the
# interpreter's teardown too (see bench_command.py).
BASELINE_EXIT = BASELINE + "import os, sys\nsys.stdout.flush()\nos._exit(0)\n"

COMMAND = "print(await session.scalar(select(func.count()).select_from(Note)))"


def build_app(root: Path, database_url: str | None) -> dict[str, str]:
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("*.db", "__pycache__", ".env", ".appshell"), dirs_exist_ok=True)
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / "noaudit.toml").write_text("[audit]\nsinks = []\n")
    (root / "baseline.py").write_text(BASELINE)
    (root / "baseline_exit.py").write_text(BASELINE_EXIT)
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    subprocess.run([sys.executable, "-m", "app.seed"], cwd=root, env=env, check=True, capture_output=True)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--database-url", help="an empty async database (default: the example's own aiosqlite file)")
    opts = parser.parse_args()
    appshell = str(Path(sys.executable).with_name("appshell"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = bytecode_on(build_app(root, opts.database_url))
        runs = {
            "plain script": ([sys.executable, "baseline.py"], env),
            "plain script, os._exit": ([sys.executable, "baseline_exit.py"], env),
            "appshell -c, audit on": ([appshell, "-c", COMMAND], env),
            "appshell -c, audit off": ([appshell, "-c", COMMAND], {**env, "APPSHELL_PROFILE": "noaudit"}),
        }
        times = measure(runs, root, opts.rounds, "15")
    print(f"examples/fastapi on {opts.database_url or 'sqlite+aiosqlite (its default)'}, rounds: {opts.rounds}")
    report(times, {"plain": "plain script", "plain+_exit": "plain script, os._exit"})


if __name__ == "__main__":
    main()
