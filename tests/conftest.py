"""Shared fixtures: a private cache, the real Docker engine, and the demo scenario.

Docker-backed tests never skip: a missing daemon is a failure (CI starts one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from patchkeeper.demo.setup import Demo, lay_out


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def docker_client() -> Any:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        pytest.fail(
            f"Docker engine unreachable (DOCKER_HOST={os.environ.get('DOCKER_HOST')}): {err}; "
            "run scripts/setup first"
        )
    return client


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Demo]:
    """The embedded demo: upstream with four PRs and a nightly image in the engine."""
    built = lay_out(tmp_path_factory.mktemp("demo") / "demo", docker_client)
    yield built
    docker_client.images.remove(built.image, force=True)
