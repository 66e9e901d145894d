"""The drift guard's rule, on real OCI layouts: an overlaid file's bytes in the image
must be the lock's vanilla, else the image is refused with every such file named."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import DriftError, ImageError, UnreachableError
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.overlay.drift import Drift, drifted, guard_local, refuse_drift
from patchkeeper.overlay.lock import Lock
from tests.oci import Entry, Image, layer, tree, write_oci_layout
from tests.overlay.locks import make_lock, sha

A = "/src/a.py"
B = "/src/b.py"
C = "/src/c.py"
SHA_A, SHA_B, SHA_C = sha(b"a\n"), sha(b"b\n"), sha(b"c\n")
SHA_A2 = sha(b"a changed\n")


def image_of(tmp_path: Path, *layers: list[Entry]) -> tuple[LayoutSource, ResolvedImage]:
    image = Image([layer(entries) for entries in layers])
    layout = write_oci_layout(tmp_path / "layout", image, "nightly")
    source = LayoutSource(layout)
    return source, source.resolve(ImageRef.parse("example/sglang:nightly"))


def vanilla_lock(vanilla: dict[str, bytes | None]) -> Lock:
    """A lock overlaying each path, made from these vanilla bytes (None: no such file)."""
    files = [
        {
            "path": path,
            "vanilla_sha256": None if data is None else sha(data),
            "patched_sha256": sha(b"patched " + path.encode()),
            "mode": 0o644,
        }
        for path, data in vanilla.items()
    ]
    return Lock.model_validate({**make_lock("f" * 64).model_dump(), "files": files})


def test_the_image_the_lock_was_made_from_passes(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a\n", B: "b\n"}))
    lock = vanilla_lock({A: b"a\n", B: b"b\n", "/src/new.py": None})
    assert drifted(source, image, lock) == []
    refuse_drift(source, image, lock)  # does not raise


def test_changed_and_missing_files_are_each_named_in_lock_order(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a changed\n", "/src/c.py": "c\n"}))
    lock = vanilla_lock({B: b"b\n", "/src/c.py": b"c\n", A: b"a\n"})
    assert drifted(source, image, lock) == [
        Drift(B, sha(b"b\n"), None),
        Drift(A, sha(b"a\n"), sha(b"a changed\n")),
    ]


def test_a_file_the_lock_says_is_absent_is_drift_when_the_image_has_it(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a\n"}))
    assert drifted(source, image, vanilla_lock({A: None})) == [Drift(A, None, sha(b"a\n"))]


def test_a_symlink_in_the_image_is_drift_even_to_the_locked_bytes(tmp_path: Path) -> None:
    """An overlay's single-file mount over a link would replace the link, not its target."""
    link = [Entry.dir("src"), Entry.symlink("src/a.py", "real.py")]
    source, image = image_of(tmp_path, tree({"/src/real.py": "a\n"}), link)
    found = drifted(source, image, vanilla_lock({A: b"a\n"}))
    assert found == [Drift(A, sha(b"a\n"), "a link to /src/real.py")]
    assert str(found[0]) == (
        f"{A}: image has a link to /src/real.py, lock's vanilla is sha256 {SHA_A[:12]}…"
    )


def test_a_drift_shows_short_digests_and_absence() -> None:
    one, two = sha(b"1"), sha(b"2")
    assert str(Drift(A, one, two)) == (
        f"{A}: image has sha256 {two[:12]}…, lock's vanilla is sha256 {one[:12]}…"
    )
    assert (
        str(Drift(A, None, two)) == f"{A}: image has sha256 {two[:12]}…, lock's vanilla is absent"
    )
    assert (
        str(Drift(A, one, None)) == f"{A}: image has absent, lock's vanilla is sha256 {one[:12]}…"
    )


def test_a_lock_without_files_never_reads_the_image(tmp_path: Path) -> None:
    source, _ = image_of(tmp_path, tree({A: "a\n"}))
    gone = ResolvedImage(ImageRef.parse("example/sglang:gone"), "sha256:" + "9" * 64, None)
    with pytest.raises(ImageError, match="no image"):
        source.read(gone, [PurePosixPath(A)])
    assert drifted(source, gone, make_lock("f" * 64)) == []
    refuse_drift(source, gone, make_lock("f" * 64))


def test_the_refusal_names_the_image_each_file_and_the_way_out(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a changed\n", B: "b\n"}))
    lock = vanilla_lock({A: b"a\n", B: b"b\n", C: b"c\n"})
    with pytest.raises(DriftError) as refused:
        refuse_drift(source, image, lock)
    assert refused.value.exit_code == 2
    assert str(refused.value) == (
        f"image example/sglang:nightly ({image.image_id[:19]}) is not the image this overlay "
        "was made from; refusing to start it with these files:\n"
        f"  {A}: image has sha256 {SHA_A2[:12]}…, lock's vanilla is sha256 {SHA_A[:12]}…\n"
        f"  {C}: image has absent, lock's vanilla is sha256 {SHA_C[:12]}…\n"
        "re-run `patchkeeper sync` against this image"
    )


def test_without_an_engine_only_a_pull_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that does not run the image has nothing to guard; one told to pull does."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    lock = vanilla_lock({A: b"a\n"})
    assert guard_local(lock, pull=False) is None
    with pytest.raises(UnreachableError):
        guard_local(lock, pull=True)
