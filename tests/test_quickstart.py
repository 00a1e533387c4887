"""The README's quick start: ./scripts/demo works without a tty, and a second run is quiet."""

from __future__ import annotations

import subprocess

from support.environment import clean_environ
from support.paths import ROOT


def test_demo_runs_a_command_quietly() -> None:
    first = subprocess.run(
        [
            str(ROOT / "scripts" / "demo"),
            "-c",
            "print(count(Customer) > 0, sorted(m for m in globals() if m[0].isupper() and m != 'Decimal'))",
        ],
        capture_output=True,
        text=True,
        env=clean_environ(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    # The demo database is the developer's to play with: check its shape, not its counts.
    assert first.stdout == "True ['Customer', 'Order', 'OrderLine', 'Product']\n"
    again = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--json", "-c", "count(Order) > 0"],
        capture_output=True,
        text=True,
        env=clean_environ(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert (again.returncode, again.stdout, again.stderr) == (0, "true\n", "")
