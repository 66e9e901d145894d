"""Which nightly a sync uses when no `--image` is given: the registry's newest."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import docker.errors

from patchkeeper.commands._common import SourceOptions, newer_nightly, pick_source
from patchkeeper.config.load import load_recipe
from patchkeeper.image.model import SourceKind
from tests.names import unique
from tests.oci import Image, engine_pull, layer, push, tree

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "qwen36-27b-fp8-mtp.yaml"
OLD = "nightly-dev-cu13-20260620-aaaaaaaa"
NEW = "nightly-dev-cu13-20260621-bbbbbbbb"


def test_the_registry_names_the_newest_nightly_and_a_newer_one_is_reported(
    docker_client: Any,
) -> None:
    repository = f"{REGISTRY}/" + unique("pk-test/newest")
    name = repository.split("/", 1)[1]
    push(REGISTRY, name, OLD, Image([layer(tree({"/f": "old"}))]))
    push(REGISTRY, name, NEW, Image([layer(tree({"/f": "new"}))]))
    recipe = load_recipe(RECIPE).model_copy(update={"image": repository})
    try:
        engine_pull(docker_client, f"{repository}:{OLD}")  # yesterday's, pulled locally
        source, ref = pick_source(SourceOptions(), recipe, None)
        assert (source.name, ref.tag) == ("registry", NEW)
        assert newer_nightly(recipe, ref) == []

        source, ref = pick_source(SourceOptions(SourceKind.ENGINE), recipe, None)
        assert (source.name, ref.tag) == ("engine", OLD)  # local tags only when asked
        assert newer_nightly(recipe, ref) == [
            f"a newer nightly than {OLD} exists in {REGISTRY}: {NEW}"
        ]

        engine_pull(docker_client, f"{repository}:{NEW}")
        source, ref = pick_source(SourceOptions(), recipe, None)
        assert (source.name, ref.tag) == ("engine", NEW)  # the engine serves what it has
    finally:
        for tag in (OLD, NEW):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(f"{repository}:{tag}", force=True)
