"""The `nights` fixture the `up` tests share (tests/overlay/nights.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from patchkeeper.demo.scenario import TAG_PATTERN
from patchkeeper.demo.setup import Demo
from patchkeeper.verify.runtime import free_port
from tests.overlay.nights import Nights, next_night, night_image


@pytest.fixture
def nights(demo: Demo, docker_client: Any, tmp_path: Path) -> Iterator[Nights]:
    token = uuid.uuid4().hex[:10]
    repository = f"pk-test/up-{token}"
    tag = demo.image.rsplit(":", 1)[1]
    night1 = night_image(demo, docker_client, tmp_path, f"{repository}:{tag}", False)
    night2 = night_image(demo, docker_client, tmp_path, f"{repository}:{next_night(tag)}", True)
    www = tmp_path / "www"
    www.mkdir()
    (www / "health").write_text("ok\n")
    port = free_port()
    container = f"pk-up-{token}"
    fields = {
        "repository": repository,
        "tags": TAG_PATTERN,
        "patchset": demo.recipe.parent / "sglang-demo.yaml",
        "container": container,
        "port": port,
        "model": demo.recipe.parent / "model",
        "www": www,
    }
    recipe = tmp_path / "recipes" / f"web-{token}.yaml"
    recipe.parent.mkdir()
    nights = Nights(recipe, fields, tmp_path / "overlays", night1, night2, container, port)
    nights.write_recipe()
    yield nights
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(container).remove(force=True)
    for reference in (night1, night2):
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference, force=True)
