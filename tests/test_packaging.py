"""Installable without cloning: the wheel CI builds carries the license and runs."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_builds_installs_with_the_pinned_stack_and_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "wheel"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "patchkeeper 0.1.0"
    [wheel] = tmp_path.glob("patchkeeper-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "patchkeeper-0.1.0.dist-info/licenses/LICENSE" in names
    assert "patchkeeper/demo/files/serving.py.txt" in names


def test_the_constraints_pin_every_runtime_dependency() -> None:
    pins = {
        line.split("==")[0]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"typer", "rich", "pydantic", "httpx", "regex", "pygithub", "docker"} <= pins
    assert all("==" in line for line in (ROOT / "constraints.txt").read_text().splitlines()[1:])
