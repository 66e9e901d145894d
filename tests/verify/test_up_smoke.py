"""`patchkeeper up` with its quick smoke subset against a real server: SGLang 0.5.13's
adapter in the Python nightly image (as in test_compose_boot), brought up by `up`."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import docker.errors
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from tests.verify.compose_recipes import ADAPTER, compose_recipe


def test_up_runs_the_quick_smoke_subset_and_keeps_a_passing_night(
    demo: Demo, python_nightly: str, docker_client: Any, tmp_path: Path
) -> None:
    recipe, port = compose_recipe(demo, tmp_path / "recipe", ADAPTER)
    token = uuid.uuid4().hex[:8]
    container = f"pk-up-smoke-{token}"
    named = recipe.with_name(f"up-{token}.yaml")  # the recipe names the compose project
    named.write_text(recipe.read_text().replace("sglang-adapter-demo", container))
    out = tmp_path / "overlays"
    args = ["up", "--recipe", str(named), "--image", python_nightly, "--out", str(out)]
    try:
        done = CliRunner().invoke(app, [*args, "--deadline", "180"])
        assert done.exit_code == 0, done.output
        assert "smoke models_list: passed" in done.output
        assert "smoke messages_basic: passed" in done.output
        assert docker_client.containers.get(container).status == "running"
        assert (out / named.stem / "current").is_symlink()
        again = CliRunner().invoke(
            app, [*args, "--check", "prefix_cache", "--url", f"http://127.0.0.1:{port}/"]
        )
        assert again.exit_code == 0, again.output  # the same overlay: nothing recreated
        assert "smoke prefix_cache: passed" in again.output
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(container).remove(force=True)
