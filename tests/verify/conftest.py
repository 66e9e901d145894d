"""Fixtures of the verify tests: the Claude Code CLI, SGLang 0.5.13 nightly images
with a real Python (see tests/sglang_image.py), and nightly images of real releases'
trees with their synced overlays (see tests/release_images.py)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from tests.conftest import WHEEL_CACHE
from tests.release_images import Nightly, release_nightlies
from tests.sglang_image import base_image, nightly_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def claude_cli() -> str:
    # scripts/setup puts .tools beside .venv; a scratch copy of the checkout (the
    # mutation benchmark's) runs with the checkout's venv, hence the second place.
    candidates = [
        os.environ.get("PATCHKEEPER_CLAUDE_CLI", ""),
        str(REPO / ".tools/node_modules/.bin/claude"),
        str(Path(sys.prefix).parent / ".tools/node_modules/.bin/claude"),
    ]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        pytest.fail("Claude Code CLI missing: scripts/setup installs it into .tools/")
    return found


@pytest.fixture(scope="session")
def python_base(docker_client: Any) -> str:
    """Debian + python3 + the sglang 0.5.13 wheel's metadata and the adapter's deps."""
    return base_image(docker_client, WHEEL_CACHE)


@pytest.fixture(scope="session")
def python_nightly(
    demo: Demo,
    docker_client: Any,
    python_base: str,
    sglang_0513_files: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A nightly with SGLang 0.5.13 checked out at the demo's first commit: no fix yet."""
    history = demo.upstream.history
    first = history.git("rev-list", "--max-parents=0", "main")
    checkout = history.source_tree(first, tmp_path_factory.mktemp("python-nightly") / "src")
    tag = f"nightly-dev-cu13-20260601-{first[:8]}"
    reference = nightly_image(docker_client, python_base, checkout, sglang_0513_files, tag, first)
    yield reference
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(reference, force=True)


def sync(recipe: Path, image: str, out: Path) -> dict[str, Any]:
    done = CliRunner().invoke(
        app, ["sync", "--recipe", str(recipe), "--image", image, "--out", str(out), "--json"]
    )
    doc: dict[str, Any] = json.loads(done.stdout)
    assert done.exit_code == 0, doc
    return doc


@pytest.fixture(scope="session")
def image_overlay(
    demo: Demo, python_nightly: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A real sync of the demo patchset onto the Python nightly: all four PRs ported."""
    doc = sync(demo.recipe, python_nightly, tmp_path_factory.mktemp("image-overlays"))
    assert {p["pr"]: p["state"] for p in doc["patches"]} == dict.fromkeys(
        (24294, 26773, 28906, 25876), "applied"
    )
    return Path(doc["overlay"])


@pytest.fixture(scope="session")
def nightlies(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Nightly]]:
    """One synced overlay per nightly of a real release's tree (and a dev tree), the
    shipped billing-line patch ported where it ports; built once for every module."""
    yield from release_nightlies(docker_client, tmp_path_factory.mktemp("release-upstream"))
