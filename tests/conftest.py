"""Shared fixtures: a private cache, the real Docker engine, and the demo scenario.

Docker-backed tests never skip: a missing daemon is a failure (CI starts one).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from patchkeeper.demo.setup import Demo, lay_out

# Registries with credentials and a flaky proxy, as fixtures for every test module.
pytest_plugins = ["tests.oci", "tests.github_double", "tests.compose_fixtures"]


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(cache))
    monkeypatch.setenv("PATCHKEEPER_ENV_DIR", str(WHEEL_CACHE / "envs"))  # big venvs: keep
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
    built = lay_out(tmp_path_factory.mktemp("demo") / "demo", docker_client, "pk-test/demo-sglang")
    yield built
    with contextlib.suppress(docker.errors.ImageNotFound):  # another session's engine use
        docker_client.images.remove(built.image, force=True)


WHEEL_CACHE = Path(
    os.environ.get("PATCHKEEPER_TEST_WHEELS", Path.home() / ".cache/patchkeeper-tests")
)


@pytest.fixture(scope="session")
def sglang_0513_files() -> dict[str, bytes]:
    """SGLang 0.5.13's Python package from its PyPI wheel, laid out as in the repository."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(WHEEL_CACHE.glob("sglang-0.5.13-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "sglang==0.5.13",
                "-d",
                str(WHEEL_CACHE),
            ],
            check=True,
        )
        wheels = sorted(WHEEL_CACHE.glob("sglang-0.5.13-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        return {
            f"python/{name}": wheel.read(name)
            for name in wheel.namelist()
            if name.startswith("sglang/") and not name.endswith("/")
        }
