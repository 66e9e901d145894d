"""`patchkeeper sync` end to end: real git upstreams, real images in a real engine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import Edit, History
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import PROTOCOL, SERVING, SOURCE_ROOT, adapter_files
from patchkeeper.demo.setup import Demo
from patchkeeper.overlay.compose_cli import Compose
from tests.names import unique

runner = CliRunner()


def sync(recipe: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(
        app, ["sync", "--recipe", str(recipe), "--out", str(out), "--json", *extra]
    )
    return result.exit_code, json.loads(result.stdout)


def by_pr(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["pr"]: p for p in doc["patches"]}


def test_demo_sync_ports_only_what_the_nightly_lacks(demo: Demo, tmp_path: Path) -> None:
    code, doc = sync(demo.recipe, tmp_path / "out", "--image-source", "engine")
    assert code == 0, doc
    assert doc["image"]["commit"] == demo.upstream.nightly_commit
    assert doc["image"]["ref"] == demo.image
    patches = by_pr(doc)
    assert patches[24294]["state"] == "upstream" and patches[24294]["via"] == "ancestry"
    assert patches[24294]["files"] == []
    fix = patches[26773]
    assert fix["state"] == "applied" and fix["hunks"] == {
        "applied": 2,
        "drift": 0,
        "present": 0,
        "conflict": 0,
    }
    assert {f["path"] for f in fix["files"]} == {
        str(SOURCE_ROOT / PROTOCOL),
        str(SOURCE_ROOT / SERVING),
    }
    assert patches[28906]["state"] == "applied" and patches[28906]["pr_state"] == "merged"
    assert patches[25876]["state"] == "applied" and patches[25876]["pr_state"] == "open"

    overlay = Path(doc["overlay"])
    links = tmp_path / "out" / doc["recipe"]
    assert (links / demo.image.split(":")[1]).resolve() == overlay
    assert (links / "latest").resolve() == overlay
    for locked in doc["files"]:
        on_disk = overlay / "rootfs" / locked["path"].lstrip("/")
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == locked["patched_sha256"]
        assert locked["vanilla_sha256"] != locked["patched_sha256"]
        assert on_disk.stat().st_mode & 0o222 == 0  # root ignores modes: the mount is ro
    override = YAML(typ="safe").load((overlay / "compose.override.yaml").read_text())
    mounts = override["services"]["sglang"]["volumes"]
    assert len(mounts) == len(doc["files"]) + 1  # each file, and the chat template
    assert all(mount["read_only"] is True for mount in mounts)
    served = (overlay / "rootfs" / str(SOURCE_ROOT / PROTOCOL).lstrip("/")).read_text()
    assert 'role: Literal["user", "assistant", "system"]' in served
    template = (overlay / "chat_template.jinja").read_text()
    assert template.startswith("{%- set enable_thinking = false %}\n")
    assert doc["chat_template"]["sha256"] == hashlib.sha256(template.encode()).hexdigest()


def test_resync_reuses_the_overlay_and_never_rewrites_it(demo: Demo, tmp_path: Path) -> None:
    _, first = sync(demo.recipe, tmp_path, "--image-source", "engine")
    path = Path(first["overlay"]) / "rootfs" / first["files"][0]["path"].lstrip("/")
    inode = path.stat().st_ino
    code, second = sync(demo.recipe, tmp_path, "--image-source", "engine")
    assert code == 0 and second["overlay"] == first["overlay"]
    assert second["overlay_created"] is False
    assert path.stat().st_ino == inode


def test_compose_accepts_the_override_and_the_container_sees_patched_bytes(
    demo: Demo, tmp_path: Path, compose: Compose
) -> None:
    _, doc = sync(demo.recipe, tmp_path, "--image-source", "engine")
    overlay = Path(doc["overlay"])
    printed = runner.invoke(app, ["compose", "--overlay", str(overlay)])
    assert printed.exit_code == 0
    assert f"source: {overlay.resolve()}/rootfs/" in printed.stdout
    store_relative = f"source: ../../.store/{overlay.name}/rootfs/"
    assert store_relative in (overlay / "compose.override.yaml").read_text()
    # Reached through the recipe's link, as a user would type it.
    via_link = tmp_path / doc["recipe"] / "latest"
    files = [via_link / "compose.yaml", via_link / "compose.override.yaml"]
    project = f"pkt-{uuid.uuid4().hex[:8]}"
    with compose.project(project, files) as argv:
        config = subprocess.run([*argv, "config"], capture_output=True, text=True)
        assert config.returncode == 0, config.stderr
        assert f"image: {doc['image']['pinned']}" in config.stdout
        assert f"source: {overlay}/rootfs/" in config.stdout  # the store, not the link
        assert "latest" not in config.stdout
        paths = [f["path"] for f in doc["files"]]
        ran = subprocess.run(
            [*argv, "run", "--rm", "--no-deps", "--entrypoint", "/bin/sha256sum", "sglang", *paths],
            capture_output=True,
            text=True,
            timeout=120,
        )
        subprocess.run([*argv, "down", "--remove-orphans"], capture_output=True, check=False)
    assert ran.returncode == 0, ran.stderr
    seen = {line.split()[1]: line.split()[0] for line in ran.stdout.splitlines() if line.strip()}
    assert seen == {f["path"]: f["patched_sha256"] for f in doc["files"]}


def test_status_reports_and_writes_nothing(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    local = ["--image-source", "engine"]  # the demo image is in the engine only
    result = runner.invoke(app, ["status", "--recipe", str(demo.recipe), "--json", *local])
    assert result.exit_code == 0
    assert by_pr(json.loads(result.stdout))[26773]["state"] == "applied"
    assert list(tmp_path.iterdir()) == []


def test_unreachable_daemon_exits_3(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    code, doc = sync(demo.recipe, tmp_path / "out", "--image-source", "engine")
    assert code == 3 and "Docker daemon unreachable" in doc["error"]
    assert not (tmp_path / "out").exists()


def test_interrupted_sync_leaves_the_previous_overlay_intact(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _, first = sync(demo.recipe, out, "--image-source", "engine")
    link = out / first["recipe"] / demo.image.split(":")[1]
    before = {p: p.read_bytes() for p in Path(first["overlay"]).rglob("*") if p.is_file()}

    # A different patchset (one more local diff) means a new overlay...
    extra = tmp_path / "extra.diff"
    extra.write_text(
        f"--- a/{SERVING}\n+++ b/{SERVING}\n@@ -1,3 +1,4 @@\n"
        + "".join(f" {line}" for line in adapter_files()[SERVING].decode().splitlines(True)[:3])
        + "+# locally patched\n"
    )
    patchset = demo.recipe.parent / "sglang-demo.yaml"
    original = patchset.read_text()
    patchset.write_text(original + f"  - diff: {extra}\n    why: local tweak\n")

    # ...which is killed just before it would have been renamed into place.
    def killed(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("patchkeeper.overlay.write.os.rename", killed)
    try:
        result = runner.invoke(
            app,
            ["sync", "--recipe", str(demo.recipe), "--out", str(out), "--image-source", "engine"],
        )
    finally:
        patchset.write_text(original)
    assert result.exit_code != 0
    assert link.resolve() == Path(first["overlay"])
    assert {p: p.read_bytes() for p in Path(first["overlay"]).rglob("*") if p.is_file()} == before
    assert not list((out / ".store").glob(".tmp-*"))
    assert len(list((out / ".store").iterdir())) == 1


def test_traversal_in_a_diff_exits_2_and_writes_nothing(demo: Demo, tmp_path: Path) -> None:
    evil = tmp_path / "evil.diff"
    evil.write_text("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+owned\n")
    patchset = tmp_path / "evil.yaml"
    patchset.write_text(
        f"upstream: {{git: {demo.upstream.url}}}\nsource_root: {SOURCE_ROOT}\n"
        f"patches:\n  - diff: {evil}\n    why: hostile\n"
    )
    recipe = tmp_path / "evil-recipe.yaml"
    recipe.write_text(demo.recipe.read_text().replace("[sglang-demo.yaml]", f"[{patchset}]"))
    code, doc = sync(recipe, tmp_path / "out", "--image-source", "engine")
    assert code == 2
    assert "evil" in doc["error"] and "../../etc/passwd" in doc["error"]
    assert not (tmp_path / "out").exists()


# --- A release branch built from SGLang 0.5.13's real wheel -----------------------

FIX = [
    Edit(
        PROTOCOL,
        '    role: Literal["user", "assistant"]\n',
        '    role: Literal["user", "assistant", "system"]\n',
    )
]
OTHER = [
    Edit(SERVING, "        # Convert messages\n", "        # Convert messages (all of them)\n")
]
CLASH = [
    Edit(
        PROTOCOL,
        '    role: Literal["user", "assistant"]\n',
        '    role: Literal["user", "assistant", "tool"]\n',
    )
]


@pytest.fixture(scope="module")
def release(
    sglang_0513_files: dict[str, bytes],
    docker_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """main: import -> #101 (FIX) -> #102 (OTHER); release-0.5: import + cherry-pick of #101,
    and a hotfix branch whose protocol.py clashes with #101. Images for both branches."""
    root = tmp_path_factory.mktemp("release")
    assert sglang_0513_files[PROTOCOL] == adapter_files()[PROTOCOL]  # the demo ships real files
    history = History(root / "work", sglang_0513_files)
    base = history.head()
    fix = history.squash_pr(101, "Accept system role", FIX)
    history.squash_pr(102, "Comment", OTHER)
    picked = history.cherry_pick("release-0.5", base, fix)
    history.git("checkout", "-q", "-b", "hotfix", base)
    clash = history.commit("Accept tool role", CLASH)
    history.git("checkout", "-q", "main")
    url = history.publish(root / "upstream.git")
    repository = unique("patchkeeper-test/sglang")
    images = {}
    for name, commit in (("picked", picked), ("clash", clash)):
        tree = history.source_tree(commit, root / f"src-{name}")
        reference = f"{repository}:nightly-dev-cu13-20260701-{commit[:8]}"
        build_image(docker_client, reference, {str(SOURCE_ROOT): tree}, with_busybox=False)
        images[name] = reference
    patchset = root / "ps.yaml"
    patchset.write_text(
        f"upstream: {{git: {url}}}\nsource_root: {SOURCE_ROOT}\npatches:\n"
        "  - {pr: 101, why: schema half}\n  - {pr: 102, why: comment}\n"
    )
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"image: {repository}\n"
        "tags: '^nightly-dev-cu13-(?P<date>\\d{8})-(?P<sha>[0-9a-f]{8})$'\n"
        f"patchsets: [{patchset}]\nservice: {{model: {{path: /m}}, gpus: null}}\n"
    )
    yield recipe, images
    for reference in images.values():
        docker_client.images.remove(reference, force=True)


def test_cherry_picked_change_is_present_and_not_applied_twice(
    release: Any, tmp_path: Path
) -> None:
    recipe, images = release
    code, doc = sync(recipe, tmp_path, "--image", images["picked"])
    assert code == 0, doc
    picked, other = by_pr(doc)[101], by_pr(doc)[102]
    assert picked["state"] == "upstream" and picked["via"] == "content"
    assert picked["hunks"] == {"applied": 0, "drift": 0, "present": 1, "conflict": 0}
    assert other["state"] == "applied"
    assert [f["path"] for f in doc["files"]] == [str(SOURCE_ROOT / SERVING)]


def test_conflict_exits_1_names_the_hunk_and_writes_nothing(release: Any, tmp_path: Path) -> None:
    recipe, images = release
    code, doc = sync(recipe, tmp_path / "out", "--image", images["clash"])
    assert code == 1
    [bad] = [p for p in doc["patches"] if p["state"] == "conflict"]
    assert bad["pr"] == 101
    [file] = bad["files"]
    assert file["path"] == str(SOURCE_ROOT / PROTOCOL)
    [hunk] = file["hunks"]
    assert hunk["header"].startswith("@@ -") and "'    role" in hunk["reason"]
    assert not (tmp_path / "out").exists()
    human = runner.invoke(
        app,
        [
            "sync",
            "--recipe",
            str(recipe),
            "--image",
            images["clash"],
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert human.exit_code == 1
    assert "conflict" in human.stdout and "pr-101" in human.stdout


def test_every_image_source_gives_the_same_overlay(
    demo: Demo, docker_client: Any, tmp_path: Path
) -> None:
    registry = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
    tag = demo.image.rsplit(":", 1)[1]
    remote = f"{registry}/{unique('pk-test/demo-sglang')}:{tag}"
    docker_client.images.get(demo.image).tag(remote)
    for line in docker_client.images.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(remote)
    archive = tmp_path / "demo.tar"
    with archive.open("wb") as handle:
        for chunk in docker_client.images.get(demo.image).save(named=True):
            handle.write(chunk)

    runs = {  # registry first: the file cache is keyed by image id, shared by all sources
        "registry": ("--image-source", "registry", "--image", remote),
        "layout": ("--image-source", "layout", "--layout", str(archive), "--image", demo.image),
        "auto": ("--image", demo.image),
    }
    docs = {}
    for name, args in runs.items():
        code, doc = sync(demo.recipe, tmp_path / name, *args)
        assert code == 0, doc
        docs[name] = doc
    assert docs["auto"]["image_read"] == {"source": "engine", "fetched_bytes": 0, "layers": []}
    assert docs["registry"]["image_read"]["source"] == "registry"
    assert docs["registry"]["image_read"]["fetched_bytes"] > 0
    assert docs["layout"]["image_read"]["source"] == "layout"
    outcome = {
        name: (
            doc["image"]["id"],
            doc["image"]["commit"],
            [(p["id"], p["state"], p["hunks"]) for p in doc["patches"]],
            [(f["path"], f["patched_sha256"]) for f in doc["files"]],
        )
        for name, doc in docs.items()
    }
    assert outcome["auto"] == outcome["registry"] == outcome["layout"]


def test_compose_merges_a_fleet_sorted_and_refuses_clashes(demo: Demo, tmp_path: Path) -> None:
    _, doc = sync(demo.recipe, tmp_path / "a", "--image-source", "engine")
    second = tmp_path / "second.yaml"
    second.write_text(
        demo.recipe.read_text()
        .replace("name: sglang\n", "name: aaa-sglang\n")
        .replace("[sglang-demo.yaml]", f"[{demo.recipe.parent / 'sglang-demo.yaml'}]")
    )
    _, other = sync(second, tmp_path / "b", "--image-source", "engine")
    args = ["compose", "--overlay", doc["overlay"], "--overlay", other["overlay"]]
    first_run = runner.invoke(app, args)
    assert first_run.exit_code == 0
    services = [
        line
        for line in first_run.stdout.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert services == ["  aaa-sglang:", "  sglang:"]
    assert runner.invoke(app, args).stdout == first_run.stdout  # deterministic
    clash = runner.invoke(
        app, ["compose", "--overlay", doc["overlay"], "--overlay", doc["overlay"]]
    )
    assert clash.exit_code == 2 and "already set" in clash.stderr
