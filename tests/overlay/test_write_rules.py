"""Writing overlays: immutable directories, an atomic friendly link, nothing half-written.

Through `write_overlay` only, so the store's layout may change without these tests."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.lock import LOCK_NAME, read_lock
from patchkeeper.overlay.write import write_overlay
from tests.overlay.locks import make_lock

P = PurePosixPath
SERVING = P("/sgl-workspace/sglang/python/sglang/srt/serving.py")
TOOL = P("/sgl-workspace/sglang/python/sglang/tool.py")
FP_A, FP_B = "a" * 64, "b" * 64


def write(
    out: Path,
    fingerprint: str,
    files: dict[PurePosixPath, tuple[bytes, int]] | None = None,
    name: str = "nightly-1",
    template: str | None = None,
) -> tuple[Path, bool]:
    files = {SERVING: (b"patched\n", 0o644)} if files is None else files
    lock = make_lock(fingerprint, {str(p): d for p, (d, _) in files.items()}, template)
    vanilla = {path: b"vanilla " + data for path, (data, _) in files.items()}
    return write_overlay(out, name, lock, files, vanilla, template, "base: 1\n", "override: 1\n")


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_an_overlay_holds_each_file_its_vanilla_the_compose_files_and_the_lock(
    tmp_path: Path,
) -> None:
    files = {SERVING: (b"patched\n", 0o644), TOOL: (b"tool\n", 0o755)}
    overlay, created = write(tmp_path, FP_A, files, template="{{ x }}")
    assert created
    assert tree(overlay) == {
        "chat_template.jinja": b"{{ x }}",
        "compose.override.yaml": b"override: 1\n",
        "compose.yaml": b"base: 1\n",
        LOCK_NAME: make_lock(FP_A, {str(SERVING): b"patched\n", str(TOOL): b"tool\n"}, "{{ x }}")
        .dump()
        .encode(),
        f"rootfs{SERVING}": b"patched\n",
        f"rootfs{TOOL}": b"tool\n",
        f"vanilla{SERVING}": b"vanilla patched\n",
        f"vanilla{TOOL}": b"vanilla tool\n",
    }
    assert read_lock(overlay).fingerprint == FP_A


def test_every_file_is_read_only_and_keeps_only_its_execute_bits(tmp_path: Path) -> None:
    files = {SERVING: (b"patched\n", 0o664), TOOL: (b"tool\n", 0o4775)}
    overlay, _ = write(tmp_path, FP_A, files)
    modes = {
        str(p.relative_to(overlay)): stat.S_IMODE(p.stat().st_mode)
        for p in overlay.rglob("*")
        if p.is_file()
    }
    assert modes[f"rootfs{SERVING}"] == 0o444
    assert modes[f"rootfs{TOOL}"] == 0o555  # executable stays; no write, no setuid
    others = {k: m for k, m in modes.items() if not k.startswith("rootfs/")}
    assert set(others.values()) == {0o444}, others


def test_the_friendly_name_is_a_relative_link_to_the_overlay(tmp_path: Path) -> None:
    out = tmp_path / "overlays"
    overlay, _ = write(out, FP_A)
    link = out / "nightly-1"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == overlay
    moved = tmp_path / "checked-out-elsewhere"
    shutil.move(out, moved)  # a committed overlays/ directory works wherever it lands
    assert (moved / "nightly-1" / LOCK_NAME).is_file()


def test_the_same_lock_again_reuses_the_overlay_without_rewriting_it(tmp_path: Path) -> None:
    first, created = write(tmp_path, FP_A)
    inode = (first / f"rootfs{SERVING}").stat().st_ino
    again, created_again = write(tmp_path, FP_A)
    assert (created, created_again) == (True, False)
    assert again == first and (again / f"rootfs{SERVING}").stat().st_ino == inode


def test_a_new_lock_gets_a_new_directory_and_the_old_one_stays_untouched(tmp_path: Path) -> None:
    old, _ = write(tmp_path, FP_A)
    before = tree(old)
    new, created = write(tmp_path, FP_B, {SERVING: (b"patched again\n", 0o644)})
    assert created and new != old
    assert (tmp_path / "nightly-1").resolve() == new
    assert tree(old) == before  # a running container's bind mounts still see their bytes
    assert (new / f"rootfs{SERVING}").read_bytes() == b"patched again\n"


def test_an_existing_overlay_with_another_fingerprint_is_never_reused(tmp_path: Path) -> None:
    # Two fingerprints that share their first 16 hex digits (what a directory name shows).
    first = "c" * 16 + "0" * 48
    second = "c" * 16 + "f" * 48
    overlay, _ = write(tmp_path, first)
    before = tree(overlay)
    with pytest.raises(ConfigError, match="different lock"):
        write(tmp_path, second, {SERVING: (b"other bytes\n", 0o644)})
    assert tree(overlay) == before
    assert read_lock(overlay).fingerprint == first


def test_names_are_independent_links(tmp_path: Path) -> None:
    one, _ = write(tmp_path, FP_A, name="nightly-1")
    two, _ = write(tmp_path, FP_B, name="nightly-2")
    assert (tmp_path / "nightly-1").resolve() == one
    assert (tmp_path / "nightly-2").resolve() == two


def test_a_real_directory_at_the_friendly_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nightly-1").mkdir()
    (tmp_path / "nightly-1" / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a patchkeeper link"):
        write(tmp_path, FP_A)
    assert (tmp_path / "nightly-1" / "mine.txt").read_text() == "keep me"


def test_abandoned_temporary_directories_are_removed_by_the_next_write(tmp_path: Path) -> None:
    overlay, _ = write(tmp_path, FP_A)
    store = overlay.parent
    for leftover in (".tmp-killed", ".tmp-xyz123"):  # a sync killed mid-build
        (store / leftover / "rootfs").mkdir(parents=True)
        (store / leftover / "rootfs" / "half.py").write_text("half")
    keep = store / "unrelated-tmp-name"
    keep.mkdir()
    write(tmp_path, FP_B)
    assert sorted(p.name for p in store.iterdir() if p.name.startswith(".tmp-")) == []
    assert keep.is_dir()  # only the builder's own temporary directories go
    write(tmp_path, FP_A)  # reuse cleans up too
    assert overlay.is_dir()


@pytest.mark.parametrize("step", ["symlink", "replace"])
def test_a_swap_that_fails_leaves_the_previous_link_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    old, _ = write(tmp_path, FP_A)
    link = tmp_path / "nightly-1"

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f"patchkeeper.overlay.write.os.{step}", fail)
    with pytest.raises(OSError, match="No space"):
        write(tmp_path, FP_B, {SERVING: (b"new\n", 0o644)})
    monkeypatch.undo()
    assert link.is_symlink() and link.resolve() == old  # never absent, never dangling
    new, _ = write(tmp_path, FP_B, {SERVING: (b"new\n", 0o644)})
    assert link.resolve() == new


def test_a_build_that_fails_leaves_no_overlay_and_no_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, _ = write(tmp_path, FP_A)
    store = old.parent

    def killed(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("patchkeeper.overlay.write.os.rename", killed)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, FP_B, {SERVING: (b"new\n", 0o644)})
    assert [p.name for p in store.iterdir()] == [old.name]
    assert (tmp_path / "nightly-1").resolve() == old


def test_a_directory_without_its_lock_is_not_an_overlay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"not an overlay \\(no {LOCK_NAME}\\)"):
        read_lock(tmp_path)
    (tmp_path / LOCK_NAME).write_text('{"format": 1}')
    with pytest.raises(ConfigError, match="invalid lock"):
        read_lock(tmp_path)


def test_an_overlay_is_built_in_a_temporary_directory_beside_it_then_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside it: the rename stays on one filesystem, so it is atomic. Named `.tmp-`: a
    # build killed before the rename is what the next write cleans up.
    renames: list[tuple[Path, Path]] = []
    real_rename = os.rename

    def recorded(source: str, target: str) -> None:
        renames.append((Path(source), Path(target)))
        real_rename(source, target)

    monkeypatch.setattr("patchkeeper.overlay.write.os.rename", recorded)
    overlay, _ = write(tmp_path, FP_A)
    [(source, target)] = renames
    assert target == overlay and source.parent == overlay.parent
    assert source.name.startswith(".tmp-") and not source.exists()


def test_the_lock_is_written_as_indented_json_in_field_order(tmp_path: Path) -> None:
    overlay, _ = write(tmp_path, FP_A)
    text = (overlay / LOCK_NAME).read_text()
    assert text.startswith('{\n  "format": 1,\n  "generated_by": "patchkeeper tests",\n')
    assert text.endswith("\n}\n")
