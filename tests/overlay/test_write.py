"""The overlay store on disk: identity by content, permissions, links that hold."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.overlay.lock import Lock, read_lock
from patchkeeper.overlay.write import STORE, OverlayContent, fingerprint, write_overlay

PATCHED = PurePosixPath("/sgl-workspace/sglang/python/sglang/srt/serving.py")


def a_lock(source: str = "engine", title: str | None = "Fix it") -> Lock:
    return Lock.model_validate(
        {
            "generated_by": "patchkeeper test",
            "recipe": "qwen",
            "service": "sglang",
            "fingerprint": "",
            "image": {
                "ref": "example/sglang:nightly-1",
                "digest": "sha256:" + "a" * 64,
                "id": "sha256:" + "b" * 64,
                "pinned": "example/sglang@sha256:" + "a" * 64,
                "commit": "c" * 40,
                "source": source,
            },
            "patchsets": [],
            "patches": [
                {
                    "id": "pr-1",
                    "patchset": "ps",
                    "pr": 1,
                    "diff_file": None,
                    "state": "applied",
                    "via": "diff",
                    "pr_state": "open",
                    "title": title,
                    "why": "because",
                    "witness": None,
                    "head": None,
                    "merge_commit": None,
                    "base": None,
                    "diff_sha256": "d" * 64,
                    "hunks": {"applied": 1, "present": 0, "conflict": 0},
                    "files": [],
                }
            ],
            "files": [
                {
                    "path": str(PATCHED),
                    "vanilla_sha256": "e" * 64,
                    "patched_sha256": "f" * 64,
                    "mode": 0o644,
                }
            ],
            "chat_template": None,
            "warnings": [],
        }
    )


def content(base: str = "services: {sglang: {command: [serve, --port, '1']}}\n") -> OverlayContent:
    return OverlayContent(
        {PATCHED: (b"patched\n", 0o644)},
        {PATCHED: b"vanilla\n"},
        "{{ messages }}",
        base,
        lambda root: f"services: {{sglang: {{volumes: ['{root}rootfs{PATCHED}:{PATCHED}:ro']}}}}\n",
    )


def test_identity_is_the_content_not_how_the_image_was_read() -> None:
    same = fingerprint(a_lock("engine"), content())
    assert fingerprint(a_lock("registry", title="Fix it (retitled)"), content()) == same
    other_args = content("services: {sglang: {command: [serve, --port, '2']}}\n")
    assert fingerprint(a_lock(), other_args) != same
    other_template = OverlayContent(**{**content().__dict__, "template": "{{ other }}"})
    assert fingerprint(a_lock(), other_template) != same


def test_a_changed_service_is_a_new_overlay_and_the_old_one_stays(tmp_path: Path) -> None:
    first, created, lock = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    assert created and read_lock(first).fingerprint == lock.fingerprint
    again, created_again, _ = write_overlay(
        tmp_path, "qwen", "nightly-1", a_lock("registry"), content()
    )
    assert again == first and not created_again
    changed = content("services: {sglang: {command: [serve, --port, '2']}}\n")
    second, created, _ = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), changed)
    assert created and second != first
    assert "'1'" in (first / "compose.yaml").read_text()  # untouched
    assert (tmp_path / "qwen" / "nightly-1").resolve() == second
    assert (tmp_path / "qwen" / "latest").resolve() == second
    override = (second / "compose.override.yaml").read_text()
    assert f"../../{STORE}/{second.name}/rootfs{PATCHED}" in override


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)  # what `sudo` often brings
    try:
        yield
    finally:
        os.umask(previous)


def test_the_store_is_readable_by_everyone_whatever_the_umask(
    tmp_path: Path, strict_umask: None
) -> None:
    overlay, _, _ = write_overlay(tmp_path / "out", "qwen", "nightly-1", a_lock(), content())
    directories = [
        tmp_path / "out" / STORE,
        overlay,
        *(p for p in overlay.rglob("*") if p.is_dir()),
    ]
    assert {stat.S_IMODE(d.stat().st_mode) for d in directories} == {0o755}
    files = [p for p in overlay.rglob("*") if p.is_file()]
    assert len(files) == 6  # rootfs, vanilla, template, two compose files, lock
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o444}


def test_out_given_as_a_link_to_another_depth_leaves_no_dangling_link(tmp_path: Path) -> None:
    real = tmp_path / "deep" / "er" / "overlays"
    real.mkdir(parents=True)
    out = tmp_path / "out"
    out.symlink_to(real)
    overlay, _, _ = write_overlay(out, "qwen", "nightly-1", a_lock(), content())
    for link in (out / "qwen" / "nightly-1", real / "qwen" / "latest"):
        assert link.is_symlink() and link.resolve() == overlay
        assert (link / "patchkeeper.lock.json").is_file()


def test_names_that_would_escape_the_out_directory_are_refused(tmp_path: Path) -> None:
    from patchkeeper.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'\.\.' cannot name an overlay directory"):
        write_overlay(tmp_path, "..", "nightly-1", a_lock(), content())
    assert list(tmp_path.iterdir()) == []
