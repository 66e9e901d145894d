"""Layer reader rules beyond path lookup: entries one layer deletes or replaces itself,
hard links, git directories, verification of a layer read to its end, the per-scope
record cache, byte accounting, progress and image configs. In-memory layers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest
from rich.progress import Progress

from patchkeeper.errors import ImageError
from patchkeeper.image.layered import read_config
from patchkeeper.image.layers import LayerReader
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.image.record import LayerCache, Record
from patchkeeper.image.verified import LayerBlob, LayerStats
from tests.image.memory import IMAGE_ID, Blobs, MemorySource, noise, read, reader_for
from tests.oci import Entry, Layer, layer, layer_from_tar, make_tar, tree, whiteout

P = PurePosixPath


# --- what a layer deletes or replaces among its own entries --------------------------


def test_a_whiteout_deletes_what_its_own_layer_made_so_far(tmp_path: Path) -> None:
    image = layer(
        [
            Entry.file("d/a.py", "a\n"),  # `d` itself never listed
            Entry.file("e.py", "kept\n"),
            Entry.file("f", "f\n"),
            whiteout("d"),
            whiteout("f"),
        ]
    )
    assert read(tmp_path, image, paths=["/d/a.py", "/e.py", "/f"]) == {
        "/d/a.py": None,
        "/e.py": b"kept\n",
        "/f": None,
    }


def test_a_whiteout_of_a_listed_directory_deletes_only_that_directory(tmp_path: Path) -> None:
    image = layer([*tree({"d/a.py": "a\n", "dx/b.py": "b\n", "e.py": "e\n"}), whiteout("d")])
    assert read(tmp_path, image, paths=["/d/a.py", "/dx/b.py", "/e.py"]) == {
        "/d/a.py": None,
        "/dx/b.py": b"b\n",  # shares the name's prefix, not its directory
        "/e.py": b"e\n",
    }


def test_a_later_entry_of_the_same_name_replaces_the_earlier_one(tmp_path: Path) -> None:
    image = layer(
        [
            Entry.file("f", "first\n"),
            Entry.file("f", "second\n"),
            Entry.file("g", "a file at first\n"),
            Entry.symlink("g", "h"),
            Entry.file("h", "through the link\n"),
        ]
    )
    assert read(tmp_path, image, paths=["/f", "/g"]) == {
        "/f": b"second\n",
        "/g": b"through the link\n",
    }


# --- layers in no known order ---------------------------------------------------------


def unordered() -> Layer:
    """`src -> opt` listed before `opt/`: the order check fails only at the second entry
    (a layer whose first entry already sorts past what is wanted is taken as ordered)."""
    return layer(
        [
            Entry.symlink("src", "opt"),
            *tree({"opt/m.py": "m\n", "opt/one": "linked\n"}),
            Entry.dir("t"),
            Entry.hardlink("t/two", "opt/one"),
        ]
    )


def test_a_layer_in_no_known_order_is_read_in_full_on_every_pass(tmp_path: Path) -> None:
    # each path takes a second pass over the layer (the symlink's target, the hard
    # link's target): that pass must not stop at an entry that merely sorts late
    image = unordered()
    reader = reader_for(Blobs(image).blobs(), LayerCache(tmp_path))
    assert reader.read([P("/src/m.py")])[P("/src/m.py")].content == b"m\n"  # type: ignore[union-attr]
    assert reader.kinds([P("/src/m.py")]) == {P("/src/m.py"): "file"}
    linked = reader_for(Blobs(image).blobs(), LayerCache(tmp_path / "2")).read([P("/t/two")])
    assert linked[P("/t/two")].content == b"linked\n"  # type: ignore[union-attr]


def test_a_cached_record_remembers_that_its_layer_follows_no_order(tmp_path: Path) -> None:
    image = unordered()
    reader_for(Blobs(image).blobs(), LayerCache(tmp_path)).read([P("/zz")])  # read in full
    again = reader_for(Blobs(image).blobs(), LayerCache(tmp_path))
    assert again.read([P("/src/m.py")])[P("/src/m.py")].content == b"m\n"  # type: ignore[union-attr]


def test_a_directory_listed_again_keeps_what_was_below_it(tmp_path: Path) -> None:
    # some tar writers list a directory a second time (its final mtime): not a replacement
    image = layer([*tree({"d/a.py": "a\n"}), Entry.dir("d")])
    assert read(tmp_path, image, paths=["/d/a.py"]) == {"/d/a.py": b"a\n"}


def test_a_directory_replaced_by_a_file_then_listed_again_is_empty(tmp_path: Path) -> None:
    image = layer([*tree({"d/a.py": "a\n"}), Entry.file("d", "f\n"), Entry.dir("d")])
    assert read(tmp_path, image, paths=["/d/a.py"]) == {"/d/a.py": None}


def test_records_of_earlier_versions_are_taken_as_ordered() -> None:
    record = Record(complete=True, unordered=True)
    raw = json.loads(record.dump())
    assert raw["unordered"] is True and Record.load(record.dump()).unordered is True
    del raw["unordered"]
    assert Record.load(json.dumps(raw).encode()).unordered is False


# --- hard links ----------------------------------------------------------------------


def test_a_hard_link_reads_as_its_target_with_the_targets_mode(tmp_path: Path) -> None:
    image = layer(
        [Entry.file("bin/tool", "#!/bin/sh\n", mode=0o755), Entry.hardlink("t", "bin/tool")]
    )
    reader = reader_for(Blobs(image).blobs(), LayerCache(tmp_path))
    found = reader.read([P("/t")])[P("/t")]
    assert found is not None
    assert (found.content, found.mode, found.path) == (b"#!/bin/sh\n", 0o755, P("/t"))
    both = reader_for(Blobs(image).blobs(), LayerCache(tmp_path / "2"))
    found = both.read([P("/bin/tool"), P("/t")])[P("/t")]  # target captured first
    assert found is not None and (found.content, found.mode) == (b"#!/bin/sh\n", 0o755)


def test_a_hard_link_to_anything_but_a_file_of_its_layer_is_absent(tmp_path: Path) -> None:
    lower = layer(tree({"low.py": "in a lower layer\n"}))
    upper = layer(
        [
            Entry.dir("d"),
            Entry.symlink("s", "low.py"),
            Entry.hardlink("to-dir", "d"),
            Entry.hardlink("to-link", "s"),
            Entry.hardlink("to-lower", "low.py"),
            Entry.hardlink("to-nothing", "missing"),
        ]
    )
    paths = ["/to-dir", "/to-link", "/to-lower", "/to-nothing"]
    assert read(tmp_path, lower, upper, paths=paths) == dict.fromkeys(paths)


# --- git directories and the checkout shortcut -----------------------------------------


def test_a_git_dir_read_holds_its_metadata_files_and_nothing_else(tmp_path: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    image = layer(
        tree(
            {
                "a/.git/HEAD": "another checkout\n",  # a name as long: not b's
                "b/.git/HEAD": "ref: refs/heads/main\n",
                "b/.git/index": "binary\n",
                "b/.git/objects/ab/cdef": "object\n",
                "b/.git/packed-refs": f"{sha} refs/heads/main\n",
                "b/.git/refs/heads/main": f"{sha}\n",
            }
        )
    )
    blobs = Blobs(image)
    reader = reader_for(blobs.blobs(), LayerCache(tmp_path))
    found = reader.read([], [P("/b/.git")])
    assert {str(p): None if f is None else f.content for p, f in found.items()} == {
        "/b/.git/HEAD": b"ref: refs/heads/main\n",
        "/b/.git/packed-refs": f"{sha} refs/heads/main\n".encode(),
        "/b/.git/refs/heads/main": f"{sha}\n".encode(),
    }
    assert blobs.opened == [0]  # one pass captures them all
    assert len(list((tmp_path / "contents").iterdir())) == 3  # objects and index never kept


def test_a_gitdir_file_is_read_as_the_git_dir_and_settles_the_checkout(tmp_path: Path) -> None:
    base = layer(tree({"src/gone.py": "from the base\n"}))
    checkout = layer(tree({"src/.git": "gitdir: ../modules/src\n", "src/kept.py": "k\n"}))
    blobs = Blobs(base, checkout)
    reader = reader_for(blobs.blobs(), LayerCache(tmp_path))
    found = reader.read([P("/src/gone.py"), P("/src/kept.py")], [P("/src/.git")])
    assert {str(p): None if f is None else f.content for p, f in found.items()} == {
        "/src/.git": b"gitdir: ../modules/src\n",
        "/src/gone.py": None,
        "/src/kept.py": b"k\n",
    }
    assert blobs.opened[0] == 1  # streamed from the top down


# --- a layer read to its end is verified ----------------------------------------------


def lying(image: Layer, digest: str | None = None, size: int | None = None) -> Blobs:
    """`image` offered under another digest or size than its bytes have."""
    blobs = Blobs(image)
    real = blobs.blobs()[0]
    blob = LayerBlob(
        digest or real.digest, real.size if size is None else size, real.media_type, real.open
    )
    blobs.blobs = lambda: [blob]  # type: ignore[method-assign]
    return blobs


def test_a_layer_whose_bytes_do_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    image = layer(tree({"a": "x\n"}))
    claimed = "sha256:" + "e" * 64
    blobs = lying(image, digest=claimed)
    reader = reader_for(blobs.blobs(), LayerCache(tmp_path))
    with pytest.raises(ImageError) as err:
        reader.read([P("/nowhere")])
    assert str(err.value) == f"layer {claimed}: content does not match (got {image.digest})"


def test_a_layer_shorter_than_declared_is_refused(tmp_path: Path) -> None:
    image = layer(tree({"a": "x\n"}))
    reader = reader_for(lying(image, size=image.size + 10).blobs(), LayerCache(tmp_path))
    with pytest.raises(ImageError) as err:
        reader.read([P("/nowhere")])
    assert str(err.value) == (
        f"layer {image.digest}: {image.size} bytes, declared {image.size + 10}"
    )


def test_a_layer_is_hashed_to_its_last_byte_past_the_end_of_its_tar(tmp_path: Path) -> None:
    # tar writers pad archives; the bytes after the end-of-archive blocks count too
    padded = layer_from_tar(make_tar(tree({"a": "x\n"})) + b"\0" * (1 << 20), "none")
    assert read(tmp_path, padded, paths=["/nowhere"]) == {"/nowhere": None}


# --- records: verified for every source, partial ones for their scope only --------------


def test_a_partial_read_is_reused_by_its_own_scope_only(tmp_path: Path) -> None:
    big = layer([*tree({"a": "first\n"}), *tree(noise())])
    cache = LayerCache(tmp_path)

    def reader(blobs: Blobs, scope: str | None) -> LayerReader:
        stats = {b.digest: LayerStats(b.digest, b.size) for b in blobs.blobs()}
        return LayerReader(blobs.blobs(), cache, scope, {}, stats)

    first = Blobs(big)
    reader(first, "registry.example/r@sha256:1").read([P("/a")])
    assert first.opened == [0] and cache.load(big.digest, None) is None
    same, other, layout = Blobs(big), Blobs(big), Blobs(big)
    assert reader(same, "registry.example/r@sha256:1").read([P("/a")])[P("/a")] is not None
    reader(other, "registry.example/r@sha256:2").read([P("/a")])
    reader(layout, None).read([P("/a")])
    assert (same.opened, other.opened, layout.opened) == ([], [0], [0])


@pytest.mark.parametrize(
    ("scopes", "opened"),
    [
        (("registry/r@sha256:1", "registry/r@sha256:2"), [0, 0]),
        (("registry/r@sha256:1", "registry/r@sha256:1"), [0]),  # one manifest, two tags
        ((None, None), [0, 0]),  # layouts: unverified partial reads are never shared
    ],
)
def test_images_of_one_source_share_partial_reads_within_their_scope_only(
    scopes: tuple[str | None, str | None], opened: list[int]
) -> None:
    big = layer([*tree({"a": "first\n"}), *tree(noise())])

    class TwoImages(MemorySource):
        def resolve(self, ref: ImageRef) -> ResolvedImage:
            scope = scopes[int(str(ref.tag)) - 1]
            image_id = f"sha256:{str(ref.tag) * 64}"
            return self.register(ref, image_id, None, {}, self.blobs.blobs(), scope)

    source = TwoImages([big])
    one, two = source.resolve(ImageRef("r", "1")), source.resolve(ImageRef("r", "2"))
    assert source.read(one, [P("/a")])[P("/a")] is not None
    assert source.read(two, [P("/a")])[P("/a")] is not None
    assert source.blobs.opened == opened
    assert (one.provenance, two.provenance) == scopes


# --- what a layered source reports ----------------------------------------------------


def test_accounting_adds_up_what_every_read_fetched() -> None:
    big = layer([*tree({"a": "first\n"}), *tree(noise())])
    source = MemorySource([big])
    image = source.resolve(ImageRef("r", "t"))
    source.read(image, [P("/zz")])  # absent, sorting last: the whole layer streams past
    first = source.accounting()
    assert first == {
        "source": "memory",
        "fetched_bytes": big.size,
        "image_bytes": big.size,
        "layers": [{"digest": big.digest, "size": big.size, "fetched": big.size, "streams": 1}],
    }
    source.read(image, [P("/zz")])  # from the layer's record: nothing fetched
    assert source.accounting() == first


def test_progress_shows_one_task_per_layer_advanced_by_the_bytes_fetched() -> None:
    big = layer(tree(noise(30)))
    progress = Progress(disable=True)
    source = MemorySource([big], progress)
    source.read(source.resolve(ImageRef("r", "t")), [P("/zz")])  # sorts last: read in full
    [task] = progress.tasks
    assert task.description == f"layer {big.digest[7:19]}"
    assert (task.total, task.completed) == (big.size, big.size)


def test_an_image_without_creation_time_or_labels_registers_without_them() -> None:
    class Bare(MemorySource):
        def resolve(self, ref: ImageRef) -> ResolvedImage:
            return self.register(ref, IMAGE_ID, None, {"created": None}, self.blobs.blobs(), "s")

    image = Bare([layer(tree({"a": "x"}))]).resolve(ImageRef("r", "t"))
    assert (image.created, image.labels, image.provenance) == (None, {}, "s")


def test_a_layer_with_a_malformed_digest_is_refused_naming_the_image() -> None:
    class Malformed(MemorySource):
        def resolve(self, ref: ImageRef) -> ResolvedImage:
            blob = LayerBlob("sha256:../../etc", 1, "x", self.blobs.blobs()[0].open)
            return self.register(ref, IMAGE_ID, None, {}, [blob], "s")

    with pytest.raises(ImageError, match=r"^image r:t: layer: malformed or unsupported digest"):
        Malformed([layer(tree({"a": "x"}))]).resolve(ImageRef("r", "t"))


# --- image configs -------------------------------------------------------------------


def config_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def test_a_sha512_config_digest_is_checked_with_sha512() -> None:
    data = json.dumps({"config": {"Labels": {"a": "b"}}}).encode()
    assert read_config(data, config_digest(data, "sha512"), "img")["config"] == {
        "Labels": {"a": "b"}
    }
    with pytest.raises(ImageError, match="does not match its digest"):
        read_config(data, "sha512:" + "0" * 128, "img")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"config": {"Labels": ["a=b"]}},
            "img: malformed config blob ('config.Labels' is not an object)",
        ),
        ({"config": ["Labels"]}, "img: malformed config blob ('config.Labels' is not an object)"),
        ({"created": 20260621}, "img: malformed config blob ('created' is not a string)"),
    ],
)
def test_a_malformed_config_is_refused_naming_the_field(config: object, message: str) -> None:
    data = json.dumps(config).encode()
    with pytest.raises(ImageError) as err:
        read_config(data, config_digest(data), "img")
    assert str(err.value) == message


def test_a_malformed_config_digest_is_refused_naming_the_config() -> None:
    with pytest.raises(ImageError, match=r"^img: config: malformed or unsupported digest"):
        read_config(b"{}", "md5:abc", "img")
