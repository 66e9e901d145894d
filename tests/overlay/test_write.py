"""The overlay store on disk: identity by content, permissions, links that hold."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.lock import Lock, read_lock
from patchkeeper.overlay.write import (
    STORE,
    OverlayContent,
    fingerprint,
    linked,
    point,
    write_overlay,
)

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
    with pytest.raises(ConfigError, match=r"'\.\.' cannot name an overlay directory"):
        write_overlay(tmp_path, "..", "nightly-1", a_lock(), content())
    assert list(tmp_path.iterdir()) == []


def test_the_overlay_holds_each_file_at_its_place_read_only(tmp_path: Path) -> None:
    tool = PurePosixPath("/usr/bin/tool")
    both = OverlayContent(
        {PATCHED: (b"patched\n", 0o600), tool: (b"#!/bin/sh\n", 0o755)},
        {PATCHED: b"vanilla\n"},
        None,
        "services: {}\n",
        lambda root: f"root: {root}\n",
    )
    assert both.entries("R/") == {
        f"rootfs{PATCHED}": (b"patched\n", 0o444),
        "rootfs/usr/bin/tool": (b"#!/bin/sh\n", 0o555),  # executable stays executable
        f"vanilla{PATCHED}": (b"vanilla\n", 0o444),
        "compose.yaml": (b"services: {}\n", 0o444),
        "compose.override.yaml": (b"root: R/\n", 0o444),
    }
    assert content().entries("./")["chat_template.jinja"] == (b"{{ messages }}", 0o444)
    overlay, _, lock = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), both)
    assert overlay.name == f"nightly-1-{lock.fingerprint[:16]}"
    assert (
        overlay / "compose.override.yaml"
    ).read_text() == f"root: ../../{STORE}/{overlay.name}/\n"
    assert stat.S_IMODE((overlay / "rootfs/usr/bin/tool").stat().st_mode) == 0o555


def test_only_what_the_overlay_mounts_and_runs_is_its_identity() -> None:
    same = fingerprint(a_lock(), content())
    described = a_lock().model_copy(
        update={"generated_by": "another version", "fingerprint": "x", "warnings": ["w"]}
    )
    assert fingerprint(described, content()) == same
    patch = a_lock().patches[0].model_copy(update={"pr_state": "merged"})
    assert fingerprint(a_lock().model_copy(update={"patches": [patch]}), content()) == same
    assert fingerprint(a_lock().model_copy(update={"recipe": "other"}), content()) != same
    why = a_lock().patches[0].model_copy(update={"why": "another reason"})
    assert fingerprint(a_lock().model_copy(update={"patches": [why]}), content()) != same
    vanilla = OverlayContent(**{**content().__dict__, "vanilla": {PATCHED: b"other\n"}})
    assert fingerprint(a_lock(), vanilla) != same
    mode = OverlayContent(**{**content().__dict__, "files": {PATCHED: (b"patched\n", 0o755)}})
    assert fingerprint(a_lock(), mode) != same


@pytest.mark.parametrize(
    ("recipe", "tag", "refused"),
    [
        ("", "t", "recipe ''"),
        (".", "t", "recipe '.'"),
        ("qwen", "..", "tag '..'"),
        ("a/b", "t", "recipe 'a/b'"),
        ("qwen", "x/y", "tag 'x/y'"),
        (".hidden", "t", "recipe '.hidden'"),
        ("qwen", ".store", "tag '.store'"),
    ],
)
def test_a_recipe_or_tag_that_is_no_plain_name_is_refused(
    tmp_path: Path, recipe: str, tag: str, refused: str
) -> None:
    with pytest.raises(ConfigError) as err:
        write_overlay(tmp_path, recipe, tag, a_lock(), content())
    assert str(err.value) == f"{refused} cannot name an overlay directory"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    """A file where a directory must go: the build stops, and its directory goes."""
    clash = OverlayContent(
        {PurePosixPath("/a"): (b"file\n", 0o644), PurePosixPath("/a/b"): (b"below\n", 0o644)},
        {},
        None,
        "services: {}\n",
        lambda root: "services: {}\n",
    )
    with pytest.raises(OSError):
        write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), clash)
    assert list((tmp_path / STORE).iterdir()) == []
    assert not (tmp_path / "qwen").exists()


def test_a_killed_syncs_leftovers_go_and_nothing_else(tmp_path: Path) -> None:
    store = tmp_path / STORE
    (store / ".tmp-abandoned" / "rootfs").mkdir(parents=True)
    (store / ".tmp-abandoned" / "rootfs" / "half.py").write_text("half")
    (store / "kept-by-hand").mkdir()
    overlay, _, _ = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    assert sorted(p.name for p in store.iterdir()) == sorted(["kept-by-hand", overlay.name])


def test_an_existing_directory_with_another_lock_is_never_touched(tmp_path: Path) -> None:
    overlay, _, lock = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    text = lock.model_copy(update={"fingerprint": "0" * 64}).dump()
    os.chmod(overlay / "patchkeeper.lock.json", 0o644)
    (overlay / "patchkeeper.lock.json").write_text(text)
    with pytest.raises(ConfigError) as refused:
        write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    assert str(refused.value) == f"{overlay}: exists with a different lock; refusing to touch it"
    assert (overlay / "patchkeeper.lock.json").read_text() == text


def test_a_friendly_name_that_is_not_a_link_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "latest").write_text("mine")
    with pytest.raises(ConfigError) as refused:
        write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    assert str(refused.value) == (
        f"{tmp_path / 'qwen' / 'latest'}: exists and is not a patchkeeper link; move it away"
    )
    assert (tmp_path / "qwen" / "latest").read_text() == "mine"


def test_a_link_names_an_overlay_only_when_it_leads_to_a_complete_one(tmp_path: Path) -> None:
    overlay, _, _ = write_overlay(tmp_path, "qwen", "nightly-1", a_lock(), content())
    links = tmp_path / "qwen"
    assert linked(links / "latest") == overlay
    assert linked(links / "missing") is None
    (links / "plain").mkdir()
    assert linked(links / "plain") is None  # a directory, not a link
    (tmp_path / STORE / "partial").mkdir()
    point(links / "partial", "partial")
    assert linked(links / "partial") is None  # no lock: not complete
    point(links / "gone", "never-written")
    assert linked(links / "gone") is None


def test_out_holds_only_the_store_the_links_and_the_lock_gc_and_publish_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gc` takes the same `.patchkeeper.lock` to serialise with sync, and publishing never
    commits it; nothing is written outside `out`."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    write_overlay(out, "qwen", "nightly-1", a_lock(), content())
    assert sorted(p.name for p in out.iterdir()) == [".patchkeeper.lock", STORE, "qwen"]
    assert list(elsewhere.iterdir()) == []
