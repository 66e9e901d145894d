"""One image, four ways in: registry, engine, `docker save` archive, OCI layout."""

from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.image.engine import EngineSource
from patchkeeper.image.identity import identify
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ImageSource
from patchkeeper.image.registry import RegistrySource
from tests.oci import Image, docker_save, engine_pull, layer, push, tree, whiteout, write_oci_layout

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
ROOT = PurePosixPath("/sgl-workspace/sglang")
SHA = "89abcdef0123456789abcdef0123456789abcdef"
SERVING = ROOT / "python/sglang/srt/entrypoints/anthropic/serving.py"


def test_the_same_commit_and_files_from_every_source(docker_client: Any, tmp_path: Path) -> None:
    checkout = layer(
        tree(
            {
                f"{ROOT}/.git/HEAD": "ref: refs/heads/main\n",
                f"{ROOT}/.git/packed-refs": f"# pack-refs with: peeled\n{SHA} refs/heads/main\n",
                str(SERVING): "old\n",
                f"{ROOT}/stale.py": "x\n",
            }
        )
    )
    upper = layer([*tree({str(SERVING): "new\n"}), whiteout(f"{ROOT}/stale.py")])
    image_def = Image([checkout, upper])
    repository = f"pk-test/agree-{uuid.uuid4().hex[:8]}"
    reference = f"{REGISTRY}/{repository}:nightly-dev-cu13-20260621-{SHA[:8]}"
    push(REGISTRY, repository, reference.rsplit(":", 1)[1], image_def)
    engine_pull(docker_client, reference)
    try:
        archive = docker_save(docker_client, reference, tmp_path / "saved.tar")
        layout = write_oci_layout(tmp_path / "layout", image_def, reference.rsplit(":", 1)[1])
        sources: list[tuple[ImageSource, str]] = [
            (RegistrySource(), reference),
            (EngineSource(docker_client), reference),
            (LayoutSource(archive), reference),
            (LayoutSource(layout), f"{repository}:{reference.rsplit(':', 1)[1]}"),
        ]
        seen = []
        for source, ref in sources:
            image = source.resolve(ImageRef.parse(ref))
            files = source.read(image, [SERVING, ROOT / "stale.py"])
            seen.append(
                (
                    source.name,
                    image.image_id,
                    identify(source, image, ROOT).commit,
                    files[SERVING].content if files[SERVING] else None,
                    files[ROOT / "stale.py"],
                )
            )
        assert {row[1:] for row in seen} == {(image_def.config_digest, SHA, b"new\n", None)}, seen
        assert [row[0] for row in seen] == ["registry", "engine", "layout", "layout"]
    finally:
        docker_client.images.remove(reference, force=True)
