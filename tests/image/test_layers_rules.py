"""Layer reading rules, on in-memory layers built by tests.oci (no registry, no daemon).

Each test pins one rule of `LayerReader` that an image could otherwise abuse or that
keeps reads cheap: names that climb out, symlinks (file and directory ones), whiteouts,
the git-checkout shortcut, the size limit, lying compression, the per-layer cache."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import random
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image.layered import read_config
from patchkeeper.image.model import ImageFile
from patchkeeper.image.paths import MAX_FILE_BYTES
from patchkeeper.image.record import LayerCache
from tests.image.memory import Blobs, read, reader_for
from tests.oci import Entry, Layer, layer, layer_from_tar, opaque, tree, whiteout

P = PurePosixPath


def test_the_topmost_layer_holding_a_path_wins(tmp_path: Path) -> None:
    bottom = layer(tree({"srv/a.py": "old a\n", "srv/b.py": "b\n"}))
    top = layer(tree({"srv/a.py": "new a\n"}))
    assert read(tmp_path, bottom, top, paths=["/srv/a.py", "/srv/b.py", "/srv/c.py"]) == {
        "/srv/a.py": b"new a\n",
        "/srv/b.py": b"b\n",
        "/srv/c.py": None,
    }


@pytest.mark.parametrize("name", ["/etc/passwd", "../etc/passwd", "srv/../../etc/passwd"])
def test_member_names_that_leave_the_root_are_refused(tmp_path: Path, name: str) -> None:
    evil = layer([Entry.file(name, "root::0:0\n")])
    with pytest.raises(UnsafeInputError, match="escapes the image root") as err:
        read(tmp_path, evil, paths=["/etc/passwd"])
    assert repr(name) in str(err.value)


def test_dot_segments_and_doubled_slashes_name_the_same_path(tmp_path: Path) -> None:
    odd = layer([Entry.file("./srv//a.py", "a\n")])
    assert read(tmp_path, odd, paths=["/srv/a.py"]) == {"/srv/a.py": b"a\n"}


# Layers list their entries in path order, as tar writers of image layers do (the reader
# stops early by that order): `opt/...` before `real.py`. The decoy at `/` catches a
# relative target resolved against the root instead of the link's own directory.
def test_a_relative_symlink_resolves_from_its_own_directory(tmp_path: Path) -> None:
    files = layer(tree({"opt/app/real.py": "beside the link\n", "real.py": "decoy at the root\n"}))
    links = layer(
        [
            Entry.dir("opt"),
            Entry.dir("opt/app"),
            Entry.symlink("opt/app/link.py", "real.py"),
            Entry.symlink("opt/app/up.py", "../app/real.py"),
        ]
    )
    blobs = Blobs(files, links)
    reader = reader_for(blobs.blobs(), LayerCache(tmp_path))
    found = reader.read([P("/opt/app/link.py"), P("/opt/app/up.py")])
    assert {str(k): None if v is None else v.content for k, v in found.items()} == {
        "/opt/app/link.py": b"beside the link\n",
        "/opt/app/up.py": b"beside the link\n",
    }
    assert found[P("/opt/app/link.py")].resolved == P("/opt/app/real.py")  # type: ignore[union-attr]
    # the target was not asked for: the further pass reads the lower layer, not the links'
    assert blobs.opened.count(1) == 1 and blobs.opened.count(0) >= 2


def test_a_relative_symlink_and_its_target_in_one_layer(tmp_path: Path) -> None:
    image = layer(
        [
            Entry.dir("opt"),
            Entry.dir("opt/app"),
            Entry.symlink("opt/app/link.py", "real.py"),
            Entry.file("opt/app/real.py", "beside the link\n"),
            Entry.file("real.py", "decoy at the root\n"),
        ]
    )
    assert read(tmp_path, image, paths=["/opt/app/link.py"]) == {
        "/opt/app/link.py": b"beside the link\n"
    }


def test_a_relative_symlink_in_an_upper_layer_reads_its_target_from_a_lower_one(
    tmp_path: Path,
) -> None:
    bottom = layer(tree({"opt/app/real.py": "beside the link\n", "real.py": "decoy\n"}))
    top = layer([Entry.symlink("opt/app/link.py", "real.py")])
    assert read(tmp_path, bottom, top, paths=["/opt/app/link.py"]) == {
        "/opt/app/link.py": b"beside the link\n"
    }


def test_absolute_and_climbing_symlinks_stay_inside_the_image(tmp_path: Path) -> None:
    files = layer(tree({"etc/real.txt": "inside\n"}))
    links = layer(
        [
            Entry.symlink("app/abs", "/etc/real.txt"),
            Entry.symlink("app/climb", "../../../../etc/real.txt"),
        ]
    )
    reader = reader_for(Blobs(files, links).blobs(), LayerCache(tmp_path))
    found = reader.read([P("/app/abs"), P("/app/climb")])
    for path in ("/app/abs", "/app/climb"):
        file = found[P(path)]
        assert file is not None and file.content == b"inside\n"
        assert file.resolved == P("/etc/real.txt") and file.path == P(path)


def test_a_directory_symlink_on_the_path_is_followed(tmp_path: Path) -> None:
    # e.g. /sgl-workspace/sglang -> /opt/sglang, with the checkout's files below the target
    image = layer(
        [
            *tree({"opt/sglang/python/x.py": "through the link\n"}),
            Entry.dir("sgl-workspace"),
            Entry.symlink("sgl-workspace/sglang", "../opt/sglang"),
        ]
    )
    found = read(tmp_path, image, paths=["/sgl-workspace/sglang/python/x.py"])
    assert found == {"/sgl-workspace/sglang/python/x.py": b"through the link\n"}


def test_a_directory_symlink_in_an_upper_layer_redirects_lower_lookups(tmp_path: Path) -> None:
    bottom = layer(tree({"v1/x.py": "one\n", "v2/x.py": "two\n", "cur/x.py": "real dir\n"}))
    top = layer([Entry.symlink("cur", "v2")])  # the directory replaced by a link
    assert read(tmp_path, bottom, top, paths=["/cur/x.py"]) == {"/cur/x.py": b"two\n"}


def test_a_file_on_the_path_hides_what_a_lower_layer_had_below_it(tmp_path: Path) -> None:
    bottom = layer(tree({"srv/pkg/a.py": "a\n"}))
    top = layer([Entry.file("srv/pkg", "now a file\n")])
    assert read(tmp_path, bottom, top, paths=["/srv/pkg/a.py"]) == {"/srv/pkg/a.py": None}


def test_hard_links_read_their_target(tmp_path: Path) -> None:
    image = layer([*tree({"a/one.py": "shared\n"}), Entry.hardlink("a/two.py", "a/one.py")])
    assert read(tmp_path, image, paths=["/a/two.py"]) == {"/a/two.py": b"shared\n"}


def test_whiteouts_hide_files_and_whole_directories(tmp_path: Path) -> None:
    bottom = layer(tree({"d/a.py": "a\n", "d/b.py": "b\n", "e/c.py": "c\n", "f/g.py": "g\n"}))
    top = layer([whiteout("d/a.py"), whiteout("e"), opaque("f"), Entry.file("f/new.py", "n\n")])
    found = read(
        tmp_path, bottom, top, paths=["/d/a.py", "/d/b.py", "/e/c.py", "/f/g.py", "/f/new.py"]
    )
    assert found == {
        "/d/a.py": None,
        "/d/b.py": b"b\n",
        "/e/c.py": None,
        "/f/g.py": None,
        "/f/new.py": b"n\n",
    }


def test_a_whiteout_below_the_file_does_not_hide_it(tmp_path: Path) -> None:
    bottom = layer([whiteout("d/a.py")])
    top = layer(tree({"d/a.py": "re-added\n"}))
    assert read(tmp_path, bottom, top, paths=["/d/a.py"]) == {"/d/a.py": b"re-added\n"}


def test_directories_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    image = layer([Entry.dir("d"), Entry.chardev("dev/null", 1, 3), Entry.fifo("run/pipe")])
    with pytest.raises(UnsafeInputError, match="/d is a directory"):
        read(tmp_path, image, paths=["/d"])
    for path in ("/dev/null", "/run/pipe"):
        with pytest.raises(UnsafeInputError, match=f"{path} is a device file or FIFO"):
            read(tmp_path, image, paths=[path])


def test_symlink_loops_end_after_the_hop_limit(tmp_path: Path) -> None:
    image = layer([Entry.symlink("a", "b"), Entry.symlink("b", "a")])
    with pytest.raises(UnsafeInputError, match=r"more than 40 (symlink )?hops"):
        read(tmp_path, image, paths=["/a"])


def test_a_symlink_chain_is_followed_up_to_40_links_as_the_kernel_does(tmp_path: Path) -> None:
    def chain(links: int) -> Layer:  # /l0 -> /l1 -> ... -> /real, sorted as layers are
        entries = [Entry.symlink(f"l{i}", f"l{i + 1}") for i in range(links - 1)]
        entries += [Entry.symlink(f"l{links - 1}", "real"), Entry.file("real", "end\n")]
        return layer(sorted(entries, key=lambda e: e.name))

    found = reader_for(Blobs(chain(40)).blobs(), LayerCache(tmp_path)).read([P("/l0")])
    assert found[P("/l0")] == ImageFile(P("/l0"), b"end\n", 0o644, P("/real"))
    with pytest.raises(UnsafeInputError, match=r"^image paths \['/l0'\]: more than 40 hops$"):
        read(tmp_path, chain(41), paths=["/l0"])


def oversized_header(name: str, size: int) -> bytes:
    """A tar whose header claims `size` bytes and then ends: the reader must refuse it
    on the header alone, never reading (or buffering) what it claims."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT)


def test_a_file_over_64_mib_is_refused_on_its_header(tmp_path: Path) -> None:
    assert MAX_FILE_BYTES == 64 * 1024 * 1024
    big = layer_from_tar(oversized_header("srv/model.py", 64 * 1024 * 1024 + 1))
    with pytest.raises(UnsafeInputError, match=f"{64 * 1024 * 1024 + 1} bytes, over the limit"):
        read(tmp_path, big, paths=["/srv/model.py"])


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compression_is_sniffed_not_taken_from_the_media_type(
    tmp_path: Path, compression: str
) -> None:
    honest = layer(tree({"a": "x\n"}), compression)  # type: ignore[arg-type]
    lying = dataclasses.replace(honest, media_type="application/vnd.oci.image.layer.v1.tar")
    assert read(tmp_path, lying, paths=["/a"]) == {"/a": b"x\n"}


def test_a_layer_that_is_not_a_tar_is_an_image_error_naming_it(tmp_path: Path) -> None:
    garbage = layer_from_tar(b"\x00garbage" * 100, "gzip")
    truncated = Layer(gzip.compress(b"x" * 700)[:30], b"", "gzip", "t", "t")
    for bad in (garbage, truncated):
        with pytest.raises(ImageError, match=f"layer {bad.digest}: unreadable"):
            read(tmp_path, bad, paths=["/a"])


def test_a_layer_is_left_as_soon_as_the_paths_are_settled(tmp_path: Path) -> None:
    noise = random.Random(0)  # incompressible, so the layer is large on the wire too
    filler = {f"z/{i}": noise.randbytes(4096) for i in range(100)}
    big = layer([*tree({"a": "first\n"}), *tree(filler)])
    blobs = Blobs(big)
    reader = reader_for(blobs.blobs(), LayerCache(tmp_path))
    reader.read([P("/a")])
    fetched = reader.stats[big.digest].fetched
    assert 0 < fetched < big.size // 2


def test_a_second_read_comes_from_the_layer_cache(tmp_path: Path) -> None:
    layers = (layer(tree({"a": "low\n", "b": "b\n"})), layer(tree({"a": "top\n"})))
    cache = LayerCache(tmp_path)
    first = reader_for(Blobs(*layers).blobs(), cache).read([P("/a"), P("/b"), P("/c")])
    again = Blobs(*layers)
    reader = reader_for(again.blobs(), LayerCache(tmp_path))
    assert reader.read([P("/a"), P("/b"), P("/c")]) == first
    assert again.opened == [] and all(s.fetched == 0 for s in reader.stats.values())


def test_cached_content_that_no_longer_matches_its_digest_is_fetched_again(
    tmp_path: Path,
) -> None:
    image = layer(tree({"a": "genuine\n"}))
    cache = LayerCache(tmp_path)
    reader_for(Blobs(image).blobs(), cache).read([P("/a")])
    stored = tmp_path / "contents" / hashlib.sha256(b"genuine\n").hexdigest()
    stored.write_bytes(b"tampered\n")
    again = Blobs(image)
    found = reader_for(again.blobs(), LayerCache(tmp_path)).read([P("/a")])
    assert found[P("/a")].content == b"genuine\n"  # type: ignore[union-attr]
    assert again.opened == [0]


def test_config_blobs_are_checked_against_their_digest() -> None:
    data = json.dumps({"config": {"Labels": {"a": "b"}}}).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert read_config(data, digest, "img") == {"config": {"Labels": {"a": "b"}}}
    with pytest.raises(ImageError, match="img: config blob does not match its digest"):
        read_config(data + b" ", digest, "img")
    bad = b"{nope"
    with pytest.raises(ImageError, match="img: config blob is not JSON"):
        read_config(bad, "sha256:" + hashlib.sha256(bad).hexdigest(), "img")
    listed = b"[1, 2]"
    with pytest.raises(ImageError, match="img: malformed config blob"):
        read_config(listed, "sha256:" + hashlib.sha256(listed).hexdigest(), "img")
