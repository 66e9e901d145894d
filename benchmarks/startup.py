"""Benchmark: how fast the command line starts (`--version`, `--help`, a TAB of completion).

Every shell completion request and every `--help` is a fresh Python process, so what
the CLI imports before it can answer is paid on each keystroke. The entry point keeps
its imports light (the command bodies import their stages lazily); this prints the
median wall time of each request over several runs, side by side with `git --version`
and `pre-commit --version` measured in the same run. Target (reported, not enforced):
patchkeeper's requests under 150 ms on the benchmark machine ("TARGET MISSED" otherwise).

Run: .venv/bin/python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MS = 150.0
BIN = Path(sys.executable).parent


def _median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr[-300:]!r}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    env = dict(os.environ)
    patchkeeper = str(BIN / "patchkeeper")
    completion = env | {
        "_PATCHKEEPER_COMPLETE": "complete_bash",
        "COMP_WORDS": "patchkeeper sy",
        "COMP_CWORD": "1",
    }
    rows: list[tuple[str, list[str], dict[str, str], bool]] = [
        ("patchkeeper --version", [patchkeeper, "--version"], env, True),
        ("patchkeeper --help", [patchkeeper, "--help"], env, True),
        ("patchkeeper <TAB> (completion)", [patchkeeper], completion, True),
    ]
    for name in ("git", "pre-commit"):
        found = shutil.which(name) or shutil.which(name, path=str(BIN))
        if found:
            rows.append((f"{name} --version", [found, "--version"], env, False))
        else:
            print(f"({name} not installed: not measured)")
    print(f"{'command':<34} {'median ms':>10}  ({runs} runs each)")
    for label, argv, run_env, ours in rows:
        ms = _median_ms(argv, run_env, runs)
        verdict = "" if not ours else ("" if ms < TARGET_MS else "  TARGET MISSED")
        print(f"{label:<34} {ms:>10.0f}{verdict}")


if __name__ == "__main__":
    main()
