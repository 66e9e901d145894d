"""What is read from an image is trusted, and cached, only as where it was read: two real
registries serving one config (one image id) over different layers never share reads."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

from patchkeeper.image.cache import CachedSource
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.image.registry import RegistrySource
from tests.names import unique
from tests.oci import Image, layer, push, tree

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
F = PurePosixPath("/srv/f.py")


def _twins(token_registry: Any) -> tuple[ImageRef, ImageRef]:
    """The same config, pushed over different layer bytes to two registries."""
    genuine = Image([layer(tree({str(F): "genuine\n"}))])
    other = Image([layer(tree({str(F): "other\n"}))])
    other.__dict__["config"] = genuine.config  # the config claims the genuine layers
    assert other.config_digest == genuine.config_digest and other.digest != genuine.digest
    name = unique("pk-test/twin")
    push(REGISTRY, name, "1", genuine)
    push(token_registry.host, f"public/{name}", "1", other, token_registry.auth)
    return ImageRef(f"{REGISTRY}/{name}", "1"), ImageRef(
        f"{token_registry.host}/public/{name}", "1"
    )


def _read(source: CachedSource, image: ResolvedImage) -> bytes:
    found = source.read(image, [F])[F]
    assert found is not None
    return found.content


def test_one_process_reading_both_registries_keeps_their_layers_apart(token_registry: Any) -> None:
    first, second = _twins(token_registry)
    source = CachedSource(RegistrySource())
    a, b = source.resolve(first), source.resolve(second)  # resolved before either is read
    assert a.image_id == b.image_id and a.provenance != b.provenance
    assert _read(source, a) == b"genuine\n"
    assert _read(source, b) == b"other\n"
    assert _read(source, a) == b"genuine\n"  # cached, under its own provenance


def test_the_file_cache_never_answers_for_another_registry(token_registry: Any) -> None:
    first, second = _twins(token_registry)
    warm = CachedSource(RegistrySource())
    assert _read(warm, warm.resolve(first)) == b"genuine\n"
    later = CachedSource(RegistrySource())  # another run, the same cache on disk
    assert _read(later, later.resolve(second)) == b"other\n"
    assert later.accounting()["fetched_bytes"] > 0  # read from the registry, not the cache
