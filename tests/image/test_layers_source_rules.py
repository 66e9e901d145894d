"""What every layered source shares (`LayeredSource`): registration, byte accounting and
progress, plus the reader's rules that only show on larger layers. In-memory layers."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.image.record import LayerCache
from tests.image.memory import IMAGE_ID, Blobs, MemorySource, noise, read, reader_for
from tests.oci import Entry, layer, tree, whiteout

P = PurePosixPath


def test_registration_carries_labels_and_creation_time() -> None:
    image = MemorySource([layer(tree({"a": "x"}))]).resolve(ImageRef("r", "t"))
    assert (image.image_id, image.labels, image.created) == (
        IMAGE_ID,
        {"k": "v"},
        "2026-06-21T00:00:00Z",
    )


def test_reading_an_image_not_yet_resolved_resolves_it_once() -> None:
    source = MemorySource([layer(tree({"a": "x\n"}))])
    image = ResolvedImage(ImageRef("r", "t"), IMAGE_ID, None)
    assert source.read(image, [P("/a")])[P("/a")].content == b"x\n"  # type: ignore[union-attr]
    source.read(image, [P("/a")])
    assert source.resolved == 1


def test_a_whiteout_settling_the_path_ends_the_layer_early(tmp_path: Path) -> None:
    bottom = layer(tree({"d/a.py": "low\n"}))
    top = layer([whiteout("d/a.py"), *tree(noise())])
    reader = reader_for(Blobs(bottom, top).blobs(), LayerCache(tmp_path))
    assert reader.read([P("/d/a.py")]) == {P("/d/a.py"): None}
    assert 0 < reader.stats[top.digest].fetched < top.size // 2


def test_a_whiteout_of_a_nested_directory_hides_what_is_below_it(tmp_path: Path) -> None:
    bottom = layer(tree({"d/e/f.py": "low\n", "d/g.py": "kept\n"}))
    top = layer([Entry.dir("d"), whiteout("d/e")])
    assert read(tmp_path, bottom, top, paths=["/d/e/f.py", "/d/g.py"]) == {
        "/d/e/f.py": None,
        "/d/g.py": b"kept\n",
    }


def test_a_file_keeps_its_permission_bits(tmp_path: Path) -> None:
    image = layer([Entry.file("bin/run", "#!/bin/sh\n", mode=0o4755), Entry.file("f", "", 0o600)])
    found = reader_for(Blobs(image).blobs(), LayerCache(tmp_path)).read([P("/bin/run"), P("/f")])
    assert [found[P(p)].mode for p in ("/bin/run", "/f")] == [0o4755, 0o600]  # type: ignore[union-attr]


def test_refusals_name_the_layer_or_the_hard_link(tmp_path: Path) -> None:
    evil = layer([Entry.file("/etc/passwd", "x")])
    with pytest.raises(UnsafeInputError, match=f"^layer {evil.digest}: refusing entry"):
        read(tmp_path, evil, paths=["/etc/passwd"])
    climbing = layer([Entry.hardlink("a", "../../etc/passwd")])
    with pytest.raises(
        UnsafeInputError, match="^" + re.escape("layer hardlink: refusing entry '../../etc/passwd'")
    ):
        read(tmp_path, climbing, paths=["/a"])
