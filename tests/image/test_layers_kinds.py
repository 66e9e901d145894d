"""`kinds`: what a path is, as `lstat` inside the image would say, from layers alone.

Sync asks it for the directories a patch creates a file in (a mount below a symlinked
directory would land wherever the link points), so each answer is pinned here on
in-memory layers: the symlink at the path itself is reported, symlinks above it are
followed inside the image, and whiteouts, files on the path and devices say what
`lstat` would."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.image.model import ImageRef
from patchkeeper.image.paths import MAX_SYMLINK_HOPS
from patchkeeper.image.record import LayerCache
from tests.image.memory import Blobs, MemorySource, reader_for
from tests.oci import Entry, Layer, layer, opaque, tree, whiteout

P = PurePosixPath


def kinds(tmp_path: Path, *layers: Layer, paths: list[str]) -> dict[str, str]:
    reader = reader_for(Blobs(*layers).blobs(), LayerCache(tmp_path / "cache"))
    return {str(k): v for k, v in reader.kinds([P(p) for p in paths]).items()}


def test_each_kind_of_entry_is_named_and_a_symlink_at_the_path_is_not_followed(
    tmp_path: Path,
) -> None:
    image = layer(
        [
            Entry.dir("d"),
            Entry.chardev("dev/null", 1, 3),
            Entry.file("f", "x\n"),
            Entry.hardlink("h", "f"),
            Entry.fifo("run/pipe"),
            Entry.symlink("s", "d"),
        ]
    )
    paths = ["/d", "/dev/null", "/f", "/h", "/run/pipe", "/s", "/nothing"]
    assert kinds(tmp_path, image, paths=paths) == {
        "/d": "dir",
        "/dev/null": "other",
        "/f": "file",
        "/h": "file",  # a hardlink to a regular file is that file
        "/run/pipe": "other",
        "/s": "symlink",
        "/nothing": "absent",
    }


def test_below_a_regular_file_nothing_exists(tmp_path: Path) -> None:
    bottom = layer(tree({"srv/pkg/a.py": "a\n"}))
    top = layer([Entry.file("srv/pkg", "now a file\n")])
    assert kinds(tmp_path, bottom, top, paths=["/srv/pkg/a.py", "/srv/pkg/new"]) == {
        "/srv/pkg/a.py": "absent",
        "/srv/pkg/new": "absent",
    }


def test_a_symlinked_directory_above_the_path_is_followed_inside_the_image(
    tmp_path: Path,
) -> None:
    # /sgl-workspace/sglang -> ../opt/sglang, resolved from the link's own directory
    bottom = layer(tree({"opt/sglang/python/x.py": "x\n", "sglang/python/decoy.py": "d\n"}))
    top = layer(
        [
            Entry.dir("sgl-workspace"),
            Entry.symlink("sgl-workspace/sglang", "../opt/sglang"),
            Entry.symlink("sgl-workspace/up", "../../../../opt"),
        ]
    )
    paths = [
        "/sgl-workspace/sglang",
        "/sgl-workspace/sglang/python",
        "/sgl-workspace/sglang/python/x.py",
        "/sgl-workspace/sglang/python/decoy.py",
        "/sgl-workspace/up/sglang/python/x.py",  # climbing stops at the image root
    ]
    assert kinds(tmp_path, bottom, top, paths=paths) == {
        "/sgl-workspace/sglang": "symlink",
        "/sgl-workspace/sglang/python": "dir",
        "/sgl-workspace/sglang/python/x.py": "file",
        "/sgl-workspace/sglang/python/decoy.py": "absent",
        "/sgl-workspace/up/sglang/python/x.py": "file",
    }


def test_whiteouts_and_opaque_directories_hide_lower_entries(tmp_path: Path) -> None:
    bottom = layer(tree({"d/a.py": "a\n", "d/b.py": "b\n", "e/c.py": "c\n", "f/g.py": "g\n"}))
    top = layer([whiteout("d/a.py"), whiteout("e"), opaque("f"), Entry.file("f/new.py", "n\n")])
    paths = ["/d/a.py", "/d/b.py", "/e", "/e/c.py", "/f", "/f/g.py", "/f/new.py"]
    assert kinds(tmp_path, bottom, top, paths=paths) == {
        "/d/a.py": "absent",
        "/d/b.py": "file",
        "/e": "absent",
        "/e/c.py": "absent",
        "/f": "dir",
        "/f/g.py": "absent",
        "/f/new.py": "file",
    }


def chain(links: int) -> Layer:
    """/l0 -> /l1 -> ... -> /real: `links` symlinked directories above /real/x."""
    entries = [Entry.symlink(f"l{i}", f"/l{i + 1}") for i in range(links - 1)]
    entries.append(Entry.symlink(f"l{links - 1}", "/real"))
    return layer(sorted([*entries, *tree({"real/x": "x\n"})], key=lambda e: e.name))


def test_symlinked_directories_are_followed_up_to_the_hop_limit(tmp_path: Path) -> None:
    # as the kernel's MAXSYMLINKS: 40 links are followed, the 41st is refused
    assert MAX_SYMLINK_HOPS == 40
    assert kinds(tmp_path, chain(40), paths=["/l0/x"]) == {"/l0/x": "file"}
    with pytest.raises(UnsafeInputError, match=r"^image paths \['/l0/x'\]: more than 40 hops$"):
        kinds(tmp_path, chain(41), paths=["/l0/x"])


def test_a_symlink_loop_above_the_path_ends_at_the_hop_limit(tmp_path: Path) -> None:
    image = layer([Entry.symlink("a", "b"), Entry.symlink("b", "a")])
    with pytest.raises(UnsafeInputError, match="more than 40 hops"):
        kinds(tmp_path, image, paths=["/a/x"])
    assert kinds(tmp_path, image, paths=["/a", "/b"]) == {"/a": "symlink", "/b": "symlink"}


def test_a_layered_source_answers_kinds_for_the_image_it_resolved() -> None:
    source = MemorySource([layer([*tree({"opt/m.py": "m\n"}), Entry.symlink("src", "opt")])])
    image = source.resolve(ImageRef("r", "t"))
    found = source.kinds(image, [P("/src"), P("/src/m.py"), P("/src/new")])
    assert found == {P("/src"): "symlink", P("/src/m.py"): "file", P("/src/new"): "absent"}
    assert source.resolved == 1
