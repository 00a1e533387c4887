"""How much does `appshell -c` cost over a plain script doing the same work?

Builds an app of 40 mapped classes in a temporary folder, then runs, in
alternating pairs, `appshell -c "print(count(Model0))"` and a plain Python
script that imports the same models and runs the same query. Prints the median
of each and the median of the per-pair ratios (target: ≤ 1.10).

    .venv/bin/python bench/bench_command.py [--pairs 11] [--audit]
"""

from __future__ import annotations

import argparse
import os
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
    (root / "baseline.py").write_text(BASELINE)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{root / 'bench.db'}", "PYTHONPATH": str(root)}
    seed = "from benchapp.models import *; from sqlalchemy import create_engine; import os; e = create_engine(os.environ['DATABASE_URL']); Base.metadata.create_all(e)\nwith e.begin() as c: c.exec_driver_sql(\"insert into model0 (name, value) values ('a', 1), ('b', 2)\")"
    subprocess.run([sys.executable, "-c", seed], cwd=root, env=env, check=True)
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str], expect: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    assert out.strip() == expect, out
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=11)
    parser.add_argument("--audit", action="store_true", help="with the audit log on (file sink)")
    opts = parser.parse_args()
    appshell = str(Path(sys.executable).with_name("appshell"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = build_app(root)
        env = {k: v for k, v in env.items() if not k.startswith("APPSHELL_")}
        if opts.audit:
            env["APPSHELL_AUDIT_LOG"] = str(root / "audit.jsonl")
        shell_cmd = [appshell, "-c", "print(count(Model0))"]
        base_cmd = [sys.executable, "baseline.py"]
        for _ in range(2):  # warm the file cache and byte-code caches
            timed(shell_cmd, root, env, "2")
            timed(base_cmd, root, env, "2")
        shell_times, base_times, ratios = [], [], []
        for _ in range(opts.pairs):
            a = timed(shell_cmd, root, env, "2")
            b = timed(base_cmd, root, env, "2")
            shell_times.append(a)
            base_times.append(b)
            ratios.append(a / b)
    print(f"models: {N_MODELS}, pairs: {opts.pairs}, audit: {'on' if opts.audit else 'default'}")
    print(f"appshell -c      median {statistics.median(shell_times) * 1000:7.1f} ms")
    print(f"plain script     median {statistics.median(base_times) * 1000:7.1f} ms")
    print(f"ratio (pairwise) median {statistics.median(ratios):.3f}  (min {min(ratios):.3f}, max {max(ratios):.3f}; target ≤ 1.10)")


if __name__ == "__main__":
    main()
