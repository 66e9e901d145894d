"""The README's first command ends in `patchkeeper demo`: it must run the main job."""

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from patchkeeper.cli import app


def test_demo_builds_the_scenario_and_syncs_it(docker_client: Any, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "demo")])
    assert done.exit_code == 0, done.output
    assert "#26773" in done.stdout and "overlay" in done.stdout
    links = list((tmp_path / "demo" / "overlays").glob("demo/nightly-dev-cu13-*"))
    assert len(links) == 1 and links[0].is_symlink()
    assert (links[0] / "patchkeeper.lock.json").is_file()


def test_the_demo_hint_names_a_command_that_runs(monkeypatch: Any) -> None:
    """Outside an activated venv `patchkeeper` is not on PATH: the hint gives its path."""
    import subprocess

    from patchkeeper.commands.demo import command_hint

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    hint = command_hint()
    assert hint != "patchkeeper"
    done = subprocess.run([*hint.split(), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("patchkeeper ")
