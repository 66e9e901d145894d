"""The README's flow on the demo: `verify` with its defaults, on an image without python3."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo


def test_default_verify_of_the_demo_falls_back_to_the_host_and_runs_the_images_tree(
    demo: Demo, tmp_path: Path
) -> None:
    synced = CliRunner().invoke(
        app,
        [
            "sync",
            "--recipe",
            str(demo.recipe),
            "--out",
            str(tmp_path),
            "--image-source",
            "engine",
            "--json",
        ],
    )
    assert synced.exit_code == 0, synced.output
    overlay = json.loads(synced.stdout)["overlay"]
    done = CliRunner().invoke(app, ["verify", "--overlay", overlay, "--json"])
    doc = json.loads(done.stdout)
    assert done.exit_code == 0, doc
    assert "has no python3 to serve from: verifying on the host" in done.stderr
    assert doc["runtime"] == "host"
    # The demo image holds a partial checkout (the adapter and version.py): its files run,
    # over the release its version.py names.
    assert doc["sglang"]["version"] == "0.5.13.post1"  # the demo bumps version.py
    assert doc["sglang"]["origin"].startswith(f"the python/ tree of {demo.image} at ")
    assert doc["sglang"]["origin"].endswith("over sglang 0.5.13.post1 from PyPI")
    verdicts = {v["patch"]: v for v in doc["patches"]}
    assert verdicts["sglang-demo/pr-26773"]["proven"] is True
    assert verdicts["sglang-demo/pr-24294"]["retirable"] is True  # the nightly has it
    assert doc["unproven"] == []


def test_the_image_runtime_refuses_an_image_without_python3(demo: Demo, tmp_path: Path) -> None:
    synced = CliRunner().invoke(
        app,
        [
            "sync",
            "--recipe",
            str(demo.recipe),
            "--out",
            str(tmp_path),
            "--image-source",
            "engine",
            "--json",
        ],
    )
    overlay = json.loads(synced.stdout)["overlay"]
    done = CliRunner().invoke(app, ["verify", "--overlay", overlay, "--runtime", "image", "--json"])
    assert done.exit_code == 2, done.output
    assert "has no python3 to serve from: use --runtime host" in json.loads(done.stdout)["error"]
