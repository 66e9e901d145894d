"""One pass per layer, abandoned as early as its (checked) path order allows."""

from __future__ import annotations

import logging
import os
from pathlib import PurePosixPath

import pytest

from patchkeeper.image.identity import identify
from patchkeeper.image.model import ImageRef
from patchkeeper.image.registry import RegistrySource
from tests.names import unique
from tests.oci import Entry, Image, Layer, layer, push

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
P = PurePosixPath
ROOT = "sgl-workspace/sglang"
SERVING = P(f"/{ROOT}/python/sglang/srt/entrypoints/anthropic/serving.py")
SHA = "fedcba9876543210fedcba9876543210fedcba98"


def noise(size: int) -> bytes:
    return os.urandom(size)


def dirs(*names: str) -> list[Entry]:
    return [Entry.dir(n) for n in names]


def checkout_entries(*, loose_ref: bool) -> list[Entry]:
    """A clone + pip layer in byte order (`sglang.egg-info` before `sglang/`)."""
    refs = [Entry.file(f"{ROOT}/.git/refs/heads/main", f"{SHA}\n")] if loose_ref else []
    packed = f"# pack-refs with: peeled fully-peeled sorted\n{SHA} refs/heads/main\n"
    return [
        *dirs("sgl-workspace", ROOT, f"{ROOT}/.git"),
        Entry.file(f"{ROOT}/.git/HEAD", "ref: refs/heads/main\n"),
        *dirs(f"{ROOT}/.git/objects", f"{ROOT}/.git/objects/pack"),
        Entry.file(f"{ROOT}/.git/objects/pack/pack-1.pack", noise(1 << 20)),
        Entry.file(f"{ROOT}/.git/packed-refs", packed),
        *dirs(f"{ROOT}/.git/refs", f"{ROOT}/.git/refs/heads"),
        *refs,
        *dirs(f"{ROOT}/python", f"{ROOT}/python/sglang", f"{ROOT}/python/sglang.egg-info"),
        *dirs(*(f"{ROOT}/python/sglang/srt{s}" for s in ("", "/entrypoints"))),
        Entry.dir(str(SERVING.parent).lstrip("/")),
        Entry.file(str(SERVING).lstrip("/"), "vanilla\n"),
        *dirs("usr", "usr/local", "usr/local/lib"),
        Entry.file("usr/local/lib/torch.so", noise(3 << 20)),
    ]


def walk_ordered() -> Layer:
    """Directory-walk order, as a first layer is written: `a/b` before `a.b`."""
    return layer(
        [
            *dirs("sgl-workspace", ROOT, f"{ROOT}/python", f"{ROOT}/python/sglang"),
            Entry.file(f"{ROOT}/python/sglang/x.py", "x\n"),
            Entry.dir(f"{ROOT}/python/sglang.egg-info"),
            *dirs("usr", "usr/lib"),
            Entry.file("usr/lib/base.so", noise(2 << 20)),
        ]
    )


def fetched(source: RegistrySource) -> dict[str, tuple[int, int, int]]:
    return {
        entry["digest"]: (entry["fetched"], entry["size"], entry["streams"])
        for entry in source.accounting()["layers"]
    }


def push_image(image: Image) -> str:
    repository = unique("pk-test/order")
    push(REGISTRY, repository, "1", image)
    return f"{REGISTRY}/{repository}"


@pytest.mark.parametrize("loose_ref", [True, False], ids=["loose-ref", "packed-refs-only"])
def test_one_pass_per_layer_stopping_early_in_both_orders(loose_ref: bool) -> None:
    base = walk_ordered()
    clone = layer(checkout_entries(loose_ref=loose_ref))
    nsight = layer([*dirs("opt", "opt/nvidia"), Entry.file("opt/nvidia/nsight", noise(1 << 20))])
    tools = layer(
        [*dirs("usr", "usr/local", "usr/local/bin"), Entry.file("usr/local/bin/t", noise(1 << 20))]
    )
    image_def = Image([base, clone, nsight, tools])
    source = RegistrySource()
    image = source.resolve(ImageRef(push_image(image_def), "1"))
    files = source.read(image, [SERVING], [P(f"/{ROOT}/.git")])  # as sync does
    assert files[SERVING] is not None and files[SERVING].content == b"vanilla\n"
    assert identify(source, image, P(f"/{ROOT}"), files=files).commit == SHA
    seen = fetched(source)
    assert seen[base.digest][0] == 0  # below the checkout: never read
    fetched_clone, size, streams = seen[clone.digest]
    assert streams == 1 and 0 < fetched_clone < size - (2 << 20)  # stopped before torch.so
    got, size, streams = seen[nsight.digest]
    assert streams == 1 and got == size  # /opt sorts before /sgl-workspace: read whole
    got, size, streams = seen[tools.digest]
    assert streams == 1 and got < size // 2  # /usr sorts after it: abandoned at once
    assert all(got <= size and streams <= 1 for got, size, streams in seen.values())


def test_a_first_layer_in_walk_order_stops_early_too() -> None:
    base = walk_ordered()
    source = RegistrySource()
    image = source.resolve(ImageRef(push_image(Image([base])), "1"))
    found = source.read(image, [P(f"/{ROOT}/python/sglang/x.py"), P(f"/{ROOT}/python/y.py")])
    assert found[P(f"/{ROOT}/python/sglang/x.py")] is not None
    assert found[P(f"/{ROOT}/python/y.py")] is None
    got, size, _ = fetched(source)[base.digest]
    assert got < size // 2


def test_an_out_of_order_layer_is_read_in_full_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shuffled = layer(
        [
            *dirs("m"),
            Entry.file("m/x", "x"),
            *dirs("c"),
            Entry.file("c/y", "y"),  # out of order: both orders are broken here
            *dirs("zz"),
            Entry.file("zz/big", noise(1 << 20)),
            *dirs("q"),
            Entry.file("q/wanted", "found at the end\n"),
        ]
    )
    source = RegistrySource()
    image = source.resolve(ImageRef(push_image(Image([shuffled])), "1"))
    with caplog.at_level(logging.DEBUG, logger="patchkeeper.image"):
        found = source.read(image, [P("/q/wanted")])
    assert found[P("/q/wanted")] is not None
    got, size, streams = fetched(source)[shuffled.digest]
    assert got == size and streams == 1  # read whole, and verified
    assert any("out of order" in r.getMessage() for r in caplog.records)


def test_a_warm_read_fetches_no_layer_bytes() -> None:
    clone = layer(checkout_entries(loose_ref=False))
    reference = push_image(Image([walk_ordered(), clone]))
    first = RegistrySource()
    first.read(first.resolve(ImageRef(reference, "1")), [SERVING], [P(f"/{ROOT}/.git")])
    warm = RegistrySource()
    image = warm.resolve(ImageRef(reference, "1"))
    files = warm.read(image, [SERVING], [P(f"/{ROOT}/.git")])
    assert identify(warm, image, P(f"/{ROOT}"), files=files).commit == SHA
    assert warm.accounting()["fetched_bytes"] == 0
