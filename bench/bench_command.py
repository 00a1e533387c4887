"""How much does `appshell -c` cost over a plain script doing the same work?

Builds an app of 40 mapped classes in a temporary folder, then runs, in
alternating rounds, a plain Python script that imports the same models and
runs the same query, `appshell -c "print(count(Model0))"` with the audit log
on (the default: a file sink, fsync per record), and the same with no audit
sink. Prints the median of each and the median of the per-round ratios to
the plain script (target: ≤ 1.10), in wall-clock time and in CPU time (user +
system), which a busy machine disturbs far less.

    .venv/bin/python bench/bench_command.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_MODELS = 40

MODEL = '''
class Model{i}(Base):
    __tablename__ = "model{i}"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int] = mapped_column(default=0)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model{parent}.id"))
'''

BASELINE = '''
import os
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from benchapp.models import *  # noqa: F403
from benchapp import models

engine = create_engine(os.environ["DATABASE_URL"])
with Session(engine) as session:
    print(session.scalar(select(func.count()).select_from(models.Model0)))
'''


# appshell ends with os._exit once the audit session has ended (cli.entry): it skips the
# interpreter's teardown (~60 ms for this app), which the plain script pays. This second
# baseline skips it too, so the ratio against it is the honest one for appshell's own work.
BASELINE_EXIT = BASELINE + "import os, sys\nsys.stdout.flush()\nos._exit(0)\n"


def build_app(root: Path) -> dict[str, str]:
    package = root / "benchapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    body = [
        "from __future__ import annotations",
        "from sqlalchemy import ForeignKey, String",
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column",
        "class Base(DeclarativeBase):\n    pass",
    ]
    body += [MODEL.format(i=i, parent=max(i - 1, 0)) for i in range(N_MODELS)]
    (package / "models.py").write_text("\n".join(body))
    (root / "pyproject.toml").write_text('[tool.appshell]\nmodels = ["benchapp.models"]\n')
    (root / "profiles").mkdir()
    (root / "profiles" / "noaudit.toml").write_text("[audit]\nsinks = []\n")
    (root / "baseline.py").write_text(BASELINE)
    (root / "baseline_exit.py").write_text(BASELINE_EXIT)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{root / 'bench.db'}", "PYTHONPATH": str(root)}
    seed = "from benchapp.models import *; from sqlalchemy import create_engine; import os; e = create_engine(os.environ['DATABASE_URL']); Base.metadata.create_all(e)\nwith e.begin() as c: c.exec_driver_sql(\"insert into model0 (name, value) values ('a', 1), ('b', 2)\")"
    subprocess.run([sys.executable, "-c", seed], cwd=root, env=env, check=True)
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str], expect: str) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds (user + system) of the process: the second holds up on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.strip() == expect, out
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


Runs = dict[str, tuple[list[str], dict[str, str]]]
Times = dict[str, list[tuple[float, float]]]


def measure(runs: Runs, cwd: Path, rounds: int, expect: str) -> Times:
    """Each run once to warm the caches, then *rounds* rounds of all of them in turn (a slow
    moment of the machine hits every run of its round alike)."""
    for cmd, run_env in runs.values():  # warm the file cache and byte-code caches
        timed(cmd, cwd, run_env, expect)
    times: Times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (cmd, run_env) in runs.items():
            times[name].append(timed(cmd, cwd, run_env, expect))
    return times


def report(times: Times, bases: dict[str, str]) -> None:
    """The median of each run; for appshell's, the median (min–max) of its per-round ratios to each base."""
    for kind, index in (("wall", 0), ("cpu", 1)):
        for name, values in times.items():
            own = [v[index] for v in values]
            line = f"{kind:<4} {name:<24} median {statistics.median(own) * 1000:7.1f} ms"
            if name.startswith("appshell"):
                for base_name, base in bases.items():
                    ratios = [a[index] / b[index] for a, b in zip(values, times[base])]
                    line += f"   vs {base_name}: {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"
            print(line)
    print("target: appshell -c ≤ 1.10 × the plain script")


def bytecode_on(env: dict[str, str]) -> dict[str, str]:
    """Byte-code caches on, as on a real host: with PYTHONDONTWRITEBYTECODE every run would
    compile appshell's modules again, a cost no deployed process pays."""
    return {k: v for k, v in env.items() if not k.startswith("APPSHELL_") and k != "PYTHONDONTWRITEBYTECODE"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    opts = parser.parse_args()
    appshell = str(Path(sys.executable).with_name("appshell"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = bytecode_on(build_app(root))
        runs = {
            "plain script": ([sys.executable, "baseline.py"], env),
            "plain script, os._exit": ([sys.executable, "baseline_exit.py"], env),
            "appshell -c, audit on": ([appshell, "-c", "print(count(Model0))"], env),
            "appshell -c, audit off": ([appshell, "-c", "print(count(Model0))"], {**env, "APPSHELL_PROFILE": "noaudit"}),
        }
        times = measure(runs, root, opts.rounds, "2")
    print(f"models: {N_MODELS}, rounds: {opts.rounds}")
    report(times, {"plain": "plain script", "plain+_exit": "plain script, os._exit"})

if __name__ == "__main__":
    main()
