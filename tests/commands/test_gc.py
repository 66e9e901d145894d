"""`patchkeeper gc` on a real store and the real engine: what keeps a store directory
(`current`, `previous`, a container mounting it, the last N syncs) and what does not
(a tag or `latest` link, trimmed with it), seen through the CLI and on disk."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.commands.gc import verdicts
from patchkeeper.demo.setup import Demo
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.write import STORE, point, write_overlay
from tests.compose_fixtures import remove_project
from tests.names import unique
from tests.overlay.locks import FILES, make_lock, overlay_content

runner = CliRunner()
PROJECT_LABEL = "com.docker.compose.project"


def sync(out: Path, tag: str, recipe: str = "demo", image: str = "example/sglang:nightly") -> Path:
    """What `sync` leaves: a store directory, a tag link and `latest` pointing at it."""
    lock = make_lock("", FILES, recipe=recipe, image=_image(tag))
    directory, _, _ = write_overlay(out, recipe, tag, lock, overlay_content(image, pin=False))
    time.sleep(0.05)  # file times tick coarsely: one sync per tick, as nights are
    return directory


def _image(tag: str) -> dict[str, Any]:
    digest = "sha256:" + "1" * 64
    return {
        "ref": f"example/sglang:{tag}",
        "digest": digest,
        "id": "sha256:" + "2" * 64,
        "pinned": f"example/sglang@{digest}",
        "commit": "3" * 40,
        "source": "registry",
    }


def gc(out: Path, *args: str) -> Any:
    done = runner.invoke(app, ["gc", "--out", str(out), "--json", *args])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["schema"] == "patchkeeper.gc/1"
    return doc


def names(entries: list[dict[str, Any]]) -> set[str]:
    return {entry["name"] for entry in entries}


def test_keep_n_keeps_the_newest_n_syncs_and_trims_the_others_tag_links(
    docker_client: Any, tmp_path: Path
) -> None:
    out = tmp_path / "overlays"
    # Written oldest first; neither name order is the sync order.
    oldest, middle, newest = sync(out, "a"), sync(out, "c"), sync(out, "b")
    other = sync(out, "z", recipe="other")  # another recipe's last sync is its own

    dry = gc(out, "--keep", "1")
    assert names(dry["removable"]) == {oldest.name, middle.name}
    assert {e["name"]: e["kept_by"] for e in dry["kept"]} == {
        newest.name: ["one of the last 1 syncs"],
        other.name: ["one of the last 1 syncs"],
    }
    assert oldest.is_dir() and (out / "demo" / "a").is_symlink()  # a dry run removes nothing

    gc(out, "--keep", "1", "--delete")
    assert not oldest.exists() and not middle.exists()
    assert newest.is_dir() and other.is_dir()
    assert sorted(p.name for p in (out / "demo").iterdir()) == ["b", "latest"]
    assert (out / "demo" / "latest").resolve() == newest


def test_keep_0_keeps_only_current_previous_and_a_resync_counts_as_new(
    docker_client: Any, tmp_path: Path
) -> None:
    out = tmp_path / "overlays"
    running, before = sync(out, "night1"), sync(out, "night2")
    point(out / "demo" / "current", running.name)
    point(out / "demo" / "previous", before.name)
    tonight = sync(out, "night3")

    zero = gc(out, "--keep", "0")
    assert names(zero["removable"]) == {tonight.name}
    assert zero["removable"][0]["links"] == ["demo/latest", "demo/night3"]
    kept = {e["name"]: e["kept_by"] for e in zero["kept"]}
    assert kept == {running.name: ["link demo/current"], before.name: ["link demo/previous"]}

    assert sync(out, "night1") == running  # the same overlay synced again: the newest sync
    os.unlink(out / "demo" / "current")
    os.unlink(out / "demo" / "previous")
    one = gc(out, "--keep", "1")
    assert names(one["removable"]) == {before.name, tonight.name}


def test_a_stopped_container_keeps_its_directory_when_out_is_reached_through_a_link(
    docker_client: Any, demo: Demo, tmp_path: Path
) -> None:
    real = tmp_path / "disk" / "overlays"
    real.mkdir(parents=True)
    alias = tmp_path / "overlays"
    alias.symlink_to(real)
    mounted = sync(alias, "night1", image=demo.image)
    latest = alias / "demo" / "latest"
    project = unique("pk-test-gc").replace("/", "-")
    compose = compose_cli.find()
    files = [latest / "compose.yaml", latest / "compose.override.yaml"]
    try:
        with compose.project(project, files, latest) as argv:  # by hand, through the link
            done = subprocess.run([*argv, "create"], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        (container,) = docker_client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
        )
        sources = [m["Source"] for m in container.attrs["Mounts"]]
        assert sources and all(s.startswith(f"{alias}/{STORE}/") for s in sources)
        sync(alias, "night2", image=demo.image)

        found = gc(alias, "--keep", "0", "--delete")
        assert {e["name"]: e["kept_by"] for e in found["kept"]} == {
            mounted.name: [f"container {container.name} (created)"]
        }
        assert mounted.is_dir()
        container.start()  # `docker start` finds its files
        container.reload()
        assert container.status == "running"
    finally:
        remove_project(docker_client, project)


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_out_that_is_not_a_directory_is_bad_input_naming_it(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "overlays"
    if kind == "file":
        out.write_text("not a directory\n")
    done = runner.invoke(app, ["gc", "--out", str(out)])
    assert done.exit_code == 2, done.output
    assert f"--out {out}: " in done.output
    assert out.exists() == (kind == "file")


def test_without_the_engine_nothing_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "overlays"
    old = sync(out, "a")
    sync(out, "b")
    done = runner.invoke(app, ["gc", "--out", str(out), "--keep", "0", "--delete"])
    assert done.exit_code == 3, done.output
    assert old.is_dir() and (out / "demo" / "a").is_symlink()


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["demo", "other"]), st.sampled_from("abcde")), max_size=12
    ),
    keep=st.integers(0, 3),
)
def test_the_last_n_syncs_are_the_n_most_recently_synced_per_recipe(
    docker_client: Any, events: list[tuple[str, str]], keep: int
) -> None:
    """Nights at times 1, 2, ...; a tag synced again is that night's sync again."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "overlays"
        last: dict[Path, tuple[str, int]] = {}
        for night, (recipe, tag) in enumerate(events, start=1):
            lock = make_lock("", FILES, recipe=recipe, image=_image(tag))
            directory, created, _ = write_overlay(
                out, recipe, tag, lock, overlay_content("example/sglang:nightly", pin=False)
            )
            at = 1_000_000 + night * 60
            if created:
                os.utime(directory, (at, at))
            for link in (out / recipe / tag, out / recipe / "latest"):
                os.utime(link, (at, at), follow_symlinks=False)
            last[directory] = (recipe, night)
        newest = {
            d
            for recipe in ("demo", "other")
            for d in sorted(
                (d for d, (r, _) in last.items() if r == recipe),
                key=lambda d: last[d][1],
                reverse=True,
            )[:keep]
        }
        if not events:
            return
        found = verdicts(out, keep, docker_client)
        assert {v.directory for v in found if v.kept_by} == newest
