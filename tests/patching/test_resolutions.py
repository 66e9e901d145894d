"""Conflicts people can act on (`sync --conflicts`) and resolutions that last (`resolve`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import Edit
from patchkeeper.errors import ConfigError
from patchkeeper.patching.conflicts import write_conflicts
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import PatchState, port
from patchkeeper.patching.resolutions import Resolution, load, record
from tests.oci import Image, layer, tree, write_oci_layout
from tests.patching.conftest import PATCHSET, RECIPE, ROOT, PrHistory, image

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]
PAD = "".join(f"# {i}\n" for i in range(8))
BASE = f"a = 1\n{PAD}b = 2\n"


def conflicting(make_upstream: MakeUpstream) -> PrHistory:
    up = make_upstream({"m.py": BASE.encode()})
    up.history.squash_pr(1, "Bump b", [Edit("m.py", "b = 2\n", "b = 20\n")])
    return up


def test_a_recorded_resolution_is_reused_then_merged_onto_a_changed_file(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    up = conflicting(make_upstream)
    ours = BASE.replace("b = 2\n", "b = 3\n").encode()
    result = up.port([1], {"m.py": ours})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.CONFLICT
    written = write_conflicts(result.conflicts, tmp_path / "conflicts")
    marked = written[(outcome.change.id, str(ROOT / "m.py"))].read_text()
    assert "<<<<<<< image /src/m.py\nb = 3\n||||||| base" in marked
    assert "=======\nb = 20\n>>>>>>> ps/PR #1" in marked
    index = json.loads((tmp_path / "conflicts/conflicts.json").read_text())
    assert index["files"][0]["hunks"][0]["header"] == outcome.files[0].hunks[0].hunk.header

    patchset = tmp_path / "ps.yaml"
    patchset.write_text("")
    diff_sha = outcome.change.diff_sha256
    resolved = BASE.replace("b = 2\n", "b = 30\n").encode()
    record(patchset, "pr-1", Resolution(ROOT / "m.py", ours, diff_sha, resolved))
    recorded = load(patchset, "pr-1")

    def again(files: dict[str, bytes]) -> tuple[PatchState, dict[object, bytes]]:
        parsed = up.change(1).with_resolutions(recorded)
        result = port([parsed], image(files))
        return result.outcomes[0].state, dict(result.changed_files())

    state, files = again({"m.py": ours})  # the same nightly file: reused as recorded
    assert state is PatchState.APPLIED and files == {ROOT / "m.py": resolved}
    moved_on = ours.replace(b"a = 1\n", b"a = 100\n")  # a new nightly, far from the conflict
    state, files = again({"m.py": moved_on})
    assert files == {ROOT / "m.py": resolved.replace(b"a = 1\n", b"a = 100\n")}
    clashing = ours.replace(b"b = 3\n", b"b = 4\n")  # a new nightly, right at the conflict
    state, _ = again({"m.py": clashing})
    assert state is PatchState.CONFLICT
    [clash] = port([up.change(1).with_resolutions(recorded)], image({"m.py": clashing})).outcomes
    note = "the recorded resolution does not merge onto the changed image file"
    assert clash.files[0].note == note
    stale = Resolution(ROOT / "m.py", ours, "0" * 64, resolved)  # recorded for another diff
    result = port([up.change(1).with_resolutions([stale])], image({"m.py": ours}))
    assert result.outcomes[0].state is PatchState.CONFLICT
    note = "a resolution was recorded for another version of this diff: resolve again"
    assert result.outcomes[0].files[0].note == note
    hunk_status = port([up.change(1).with_resolutions(recorded)], image({"m.py": ours}))
    assert hunk_status.outcomes[0].files[0].hunks[0].status is HunkStatus.DRIFTED


def test_a_tampered_resolution_is_refused(tmp_path: Path) -> None:
    patchset = tmp_path / "ps.yaml"
    entry = record(patchset, "pr-1", Resolution(ROOT / "m.py", b"x\n", "d" * 64, b"y\n"))
    (entry / "resolved").write_bytes(b"evil\n")
    with pytest.raises(ConfigError, match="do not match their sha256"):
        load(patchset, "pr-1")


def test_sync_conflicts_resolve_and_sync_again_through_the_cli(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    up = conflicting(make_upstream)
    resolver = up.resolver  # publishes the upstream
    url = resolver.mirror.url
    nightly = up.history.head("HEAD~1")
    ours = BASE.replace("b = 2\n", "b = 3\n")
    files: dict[str, bytes | str] = {"src/m.py": ours, "src/.git/HEAD": nightly + "\n"}
    tag = f"nightly-20260101-{nightly[:8]}"
    write_oci_layout(tmp_path / "layout", Image(layers=[layer(tree(files))]), tag=tag)
    (tmp_path / "ps.yaml").write_text(PATCHSET.format(url=url))
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(model=tmp_path))
    runner = CliRunner()
    sync = [
        "sync", "--recipe", str(tmp_path / "recipe.yaml"), "--image", f"t/sglang:{tag}",
        "--image-source", "layout", "--layout", str(tmp_path / "layout"),
        "--out", str(tmp_path / "out"), "--json",
    ]  # fmt: skip
    conflicts = tmp_path / "conflicts"
    first = runner.invoke(app, [*sync, "--conflicts", str(conflicts)])
    assert first.exit_code == 1, first.stdout
    [patch] = json.loads(first.stdout)["patches"]
    marked = Path(patch["files"][0]["conflict_file"])
    assert marked.parent.parent == conflicts / "ps" / "pr-1" and "|||||||" in marked.read_text()
    human = runner.invoke(app, [*sync[:-1], "--conflicts", str(tmp_path / "again")])
    assert human.exit_code == 1 and "diff3-marked in" in human.stdout
    resolve = ["resolve", "--recipe", str(tmp_path / "recipe.yaml"), "--conflicts", str(conflicts)]
    refused = runner.invoke(app, [*resolve, "--json"])
    assert refused.exit_code == 2 and "still holding conflict markers" in refused.stdout
    assert not (tmp_path / "ps.resolutions").exists()
    marked.write_text(ours.replace("b = 3\n", "b = 23\n"))
    assert runner.invoke(app, resolve).exit_code == 0
    second = runner.invoke(app, sync)
    assert second.exit_code == 0, second.stdout
    doc = json.loads(second.stdout)
    overlay = Path(doc["overlay"]) / "rootfs/src/m.py"
    assert overlay.read_text() == ours.replace("b = 3\n", "b = 23\n")
    assert "recorded resolution" in doc["patches"][0]["files"][0]["note"]
