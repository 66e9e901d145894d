"""An image archive (`docker save`, a tarred OCI layout) is read three layers at a time:
each layer reads through a handle of its own, so parallel reads never mix their bytes."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef
from tests.oci import Image, layer, tree, write_oci_layout


def test_layers_read_in_parallel_from_one_archive_keep_their_own_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Big, incompressible layers each holding the file asked for last: every layer is read
    # to its end (and verified) by three threads at once.
    files = [{f"/big{n}": os.urandom(3 << 20), f"/z{n}": f"layer {n}\n"} for n in range(3)]
    image = Image([layer(tree(f)) for f in files])
    layout = write_oci_layout(tmp_path / "layout", image, "1")
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for item in sorted(layout.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(layout)), recursive=False)
    wanted = [PurePosixPath(f"/z{n}") for n in range(3)]
    for attempt in range(4):
        monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(tmp_path / f"cache{attempt}"))
        source = LayoutSource(archive)  # a cold cache: every layer streamed again
        found = source.read(source.resolve(ImageRef("x", "1")), wanted)
        assert {p: f and f.content for p, f in found.items()} == {
            PurePosixPath(f"/z{n}"): f"layer {n}\n".encode() for n in range(3)
        }
