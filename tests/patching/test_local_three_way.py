"""Local diffs made from upstream code port three-way against the blob their `index` line
names, found in a real mirror; any other local diff is matched exactly, as before."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config.models import Patch
from patchkeeper.demo.history import Edit, History
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import ParsedChange, PatchState, PortResult, port
from patchkeeper.pipeline import with_bases
from patchkeeper.upstream.model import PrState, UpstreamChange
from tests.git_http import GitHttpServer
from tests.oci import Image, layer, tree, write_oci_layout
from tests.patching.conftest import BASE, RECIPE, ROOT, PrHistory, image, merge_file
from tests.upstream.blob_ids import blob_id, colliding

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]
FIX = Edit("m.py", "b = 2\n", "b = 20\n")  # the local fix, three lines below `# 5`
DRIFT = Edit("m.py", "# 5\n", "# five\n")  # upstream, later: inside the fix's context


def made_from(history: History, edits: list[Edit], *flags: str) -> str:
    """The diff `git diff` makes of `edits` to the work tree (left as it was)."""
    for edit in edits:
        target = history.path / edit.path
        target.write_text(target.read_text().replace(edit.old, edit.new or ""))
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "diff", *flags], cwd=history.path, env=env, capture_output=True, text=True
    )
    history.git("checkout", "--", ".")
    return done.stdout


def local(diff: str) -> ParsedChange:
    change = UpstreamChange("ps", Patch(diff=Path("fix.diff"), why="t"), PrState.LOCAL, diff)
    return ParsedChange.of(change, ROOT)


def ported(up: PrHistory, diff: str, files: dict[str, bytes]) -> tuple[PortResult, list[str]]:
    """The diff ported as sync ports it: its blobs looked up in the mirror first."""
    up.resolver.prepare([])
    warnings: list[str] = []
    changes = with_bases(up.resolver, [local(diff)], warnings)
    return port(changes, image(files)), warnings


@pytest.mark.parametrize("flags", [(), ("--full-index",)], ids=["abbreviated", "full-index"])
def test_a_diff_made_from_upstream_code_merges_onto_drift_exact_matching_refuses(
    make_upstream: MakeUpstream, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    up = make_upstream({"m.py": BASE.encode()})
    diff = made_from(up.history, [FIX], *flags)
    named = blob_id(BASE.encode())
    index = f"index {named if flags else named[:7]}.."
    assert index in diff
    up.history.squash_pr(1, "Five", [DRIFT])
    nightly = up.file_at("HEAD", "m.py")
    result, warnings = ported(up, diff, {"m.py": nightly})
    [outcome] = result.outcomes
    want = nightly.replace(b"b = 2\n", b"b = 20\n")
    assert (outcome.state, result.changed_files()) == (PatchState.APPLIED, {ROOT / "m.py": want})
    [file] = outcome.files
    assert file.note == f"three-way against upstream blob {named[:12] if flags else named[:7]}"
    assert [h.status for h in file.hunks] == [HunkStatus.DRIFTED]
    assert (want, 0) == merge_file(
        nightly, BASE.encode(), want.replace(b"# five", b"# 5"), tmp_path
    )
    assert warnings == []
    # Exact matching, what this diff got before, cannot place it: its context changed.
    [exact] = port([local(diff)], image({"m.py": nightly})).outcomes
    assert exact.state is PatchState.CONFLICT
    assert "context does not match" in exact.files[0].hunks[0].reason


def test_a_diff_made_from_code_upstream_never_had_is_matched_exactly_as_before(
    make_upstream: MakeUpstream,
) -> None:
    up = make_upstream({"m.py": BASE.encode()})
    up.resolver.prepare([])  # published: the local commit below is not upstream's
    mine = up.history.commit("local", [Edit("m.py", "a = 1\n", "a = 2\n")])
    diff = made_from(up.history, [FIX])
    named = subprocess.run(
        ["git", "rev-parse", f"{mine}:m.py"], cwd=up.history.path, capture_output=True, text=True
    ).stdout.strip()
    assert f"index {named[:7]}.." in diff
    states = []
    for files in (
        {"m.py": up.file_at(mine, "m.py")},  # exact matching ports it
        {"m.py": up.file_at(mine, "m.py").replace(b"# 5", b"# five")},  # and refuses this
    ):
        result, warnings = ported(up, diff, files)
        before = port([local(diff)], image(files))
        assert result.changed_files() == before.changed_files()
        [outcome], [was] = result.outcomes, before.outcomes
        assert outcome.state is was.state
        assert [h.status for h in outcome.files[0].hunks] == [h.status for h in was.files[0].hunks]
        note = f"matched exactly: no upstream blob {named[:7]} to merge against"
        assert (outcome.files[0].note, warnings) == (note, [])
        states.append(outcome.state)
    assert states == [PatchState.APPLIED, PatchState.CONFLICT]


BLOCK = "    out = call(\n        text=text,\n        stream=stream,\n    )\n    return out\n"
NOTES = "".join(f"# note {i}\n" for i in range(8))
SERVER = (
    f"{NOTES}\n\ndef generate(text, stream):\n{BLOCK}\n\n"
    f"async def async_generate(text, stream):\n{BLOCK}\n\n# end\n"
)


def test_a_block_the_image_holds_twice_goes_where_the_diff_changed_it(
    make_upstream: MakeUpstream,
) -> None:
    up = make_upstream({"server.py": SERVER.encode()})
    head = (
        "def generate(text, stream):\n    out = call(\n        text=text,\n        stream=stream,\n"
    )
    diff = made_from(up.history, [Edit("server.py", head, f"{head}        session_id=None,\n")])
    nightly = SERVER.replace(NOTES, "").encode()  # its lines moved up
    result, _ = ported(up, diff, {"server.py": nightly})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.APPLIED
    patched = result.changed_files()[ROOT / "server.py"].decode()
    generate, async_generate = patched.split("async def")
    assert "session_id=None" in generate and "session_id" not in async_generate
    [exact] = port([local(diff)], image({"server.py": nightly})).outcomes
    assert exact.state is PatchState.CONFLICT
    assert "occurs more than once" in exact.files[0].hunks[0].reason


def test_a_hand_edited_diff_ports_by_its_hunks(make_upstream: MakeUpstream) -> None:
    up = make_upstream({"m.py": BASE.encode()})
    diff = made_from(up.history, [FIX])
    up.history.squash_pr(1, "Five", [DRIFT])
    nightly = up.file_at("HEAD", "m.py")
    # The added line changed by hand: the index line's result id is stale, the hunk rules.
    edited, _ = ported(up, diff.replace("+b = 20\n", "+b = 21\n"), {"m.py": nightly})
    assert edited.changed_files() == {ROOT / "m.py": nightly.replace(b"b = 2\n", b"b = 21\n")}
    assert edited.outcomes[0].files[0].note.startswith("three-way against upstream blob ")
    # Line numbers that do not fit its base: no three-way; matched exactly, as before.
    header = next(line for line in diff.splitlines() if line.startswith("@@"))
    moved = diff.replace(header, header.replace("@@ -", "@@ -1").replace("+", "+1", 1))
    assert moved != diff
    base = BASE.encode()
    shifted, _ = ported(up, moved, {"m.py": base})
    [outcome] = shifted.outcomes
    assert shifted.changed_files() == {ROOT / "m.py": base.replace(b"b = 2\n", b"b = 20\n")}
    named = blob_id(base)[:7]
    assert (
        outcome.files[0].note
        == f"matched exactly: its hunks do not replay onto upstream blob {named}"
    )
    refused, _ = ported(up, moved, {"m.py": nightly})
    assert refused.outcomes[0].state is PatchState.CONFLICT


def test_an_ambiguous_or_damaged_base_is_never_guessed(make_upstream: MakeUpstream) -> None:
    one, two = colliding(4, BASE.encode())  # two versions of m.py, ids alike in 4 digits
    up = make_upstream({"m.py": one})
    up.history.commit("two", [Edit("m.py", one.decode(), two.decode())])
    up.history.commit("back", [Edit("m.py", two.decode(), one.decode())])
    diff = made_from(up.history, [FIX], "--full-index")
    named, other = blob_id(one), blob_id(two)
    nightly = one.replace(b"# 5", b"# five")
    # Abbreviated to the digits the other version shares: a warning, and exact matching.
    ambiguous = diff.replace(f"index {named}", f"index {named[:4]}")
    result, warnings = ported(up, ambiguous, {"m.py": nightly})
    assert result.outcomes[0].state is PatchState.CONFLICT
    [warning] = warnings
    assert warning.startswith("ps/diff fix: m.py: the index line's blob ")
    assert "ambiguous" in warning and ", ".join(sorted((named, other))) in warning
    # The mirror's copy of the blob is not that blob: a warning, and exact matching.
    mirror = up.resolver.mirror.path
    lie = one.replace(b"b = 2", b"b = 3")
    loose = mirror / "objects" / named[:2] / named[2:]
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(zlib.compress(b"blob %d\0" % len(lie) + lie))
    result, warnings = ported(up, diff, {"m.py": nightly})
    assert result.outcomes[0].state is PatchState.CONFLICT
    assert result.changed_files() == {}
    [warning] = warnings
    assert f"the mirror's copy of blob {named} is not that blob" in warning


class Journey:
    """A recipe whose patchset holds one local diff (`git diff` of FIX, made from upstream's
    m.py), its upstream served by git http-backend behind Basic auth, over a nightly-shaped
    OCI layout whose m.py is upstream's after `drift`; run through the CLI."""

    def __init__(self, tmp: Path, server: GitHttpServer, history: History, drift: Edit) -> None:
        self.tmp, self.server = tmp, server
        self.diff = made_from(history, [FIX])
        (tmp / "fix.diff").write_text(self.diff)
        history.squash_pr(1, "Drift", [drift])
        commit = history.head()
        self.nightly = (history.path / "m.py").read_bytes()
        history.publish(tmp / "served" / "up.git")
        self.tag = f"nightly-20260101-{commit[:8]}"
        files: dict[str, bytes | str] = {"src/.git/HEAD": commit + "\n", "src/m.py": self.nightly}
        write_oci_layout(tmp / "layout", Image(layers=[layer(tree(files))]), tag=self.tag)
        url = server.url("up.git", "bot:s3cret-pass")
        (tmp / "ps.yaml").write_text(
            f"upstream: {{git: '{url}', branch: main}}\nsource_root: /src\npatches:\n"
            f"  - diff: {tmp / 'fix.diff'}\n    why: t\n"
        )
        (tmp / "recipe.yaml").write_text(RECIPE.format(model=tmp))

    def sync(self, *extra: str) -> tuple[int, str]:
        args = [
            "sync", "--recipe", str(self.tmp / "recipe.yaml"), "--image", f"t/sglang:{self.tag}",
            "--image-source", "layout", "--layout", str(self.tmp / "layout"),
            "--out", str(self.tmp / "out"), *extra,
        ]  # fmt: skip
        result = CliRunner().invoke(app, args)
        return result.exit_code, result.stdout


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator[Callable[[Edit], Journey]]:
    with GitHttpServer(tmp_path / "served", "bot", "s3cret-pass") as server:
        history = History(tmp_path / "work", {"m.py": BASE.encode()})
        yield lambda drift: Journey(tmp_path, server, history, drift)


def test_sync_ports_a_local_diff_three_way_over_http(serve: Callable[[Edit], Journey]) -> None:
    run = serve(DRIFT)
    named = blob_id(BASE.encode())[:7]
    assert f"index {named}.." in run.diff  # git's default: abbreviated
    code, out = run.sync("--json")
    assert code == 0, out
    doc = json.loads(out)
    overlay = Path(doc["overlay"])
    want = run.nightly.replace(b"b = 2\n", b"b = 20\n")
    assert (overlay / "rootfs/src/m.py").read_bytes() == want
    lock = json.loads((overlay / "patchkeeper.lock.json").read_text())
    [patch] = lock["patches"]
    assert (patch["state"], patch["hunks"]["drift"]) == ("applied", 1)
    assert patch["files"][0]["note"] == f"three-way against upstream blob {named}"
    assert any(ok and "git-upload-pack" in path for path, ok in run.server.requests)
    code, table = run.sync()
    assert code == 0 and f"note ps/fix /src/m.py: three-way against upstream blob {named}" in (
        " ".join(table.split())
    )


def test_a_conflicting_local_diff_gets_diff3_markers_and_a_resolution_lasts(
    serve: Callable[[Edit], Journey],
) -> None:
    run = serve(Edit("m.py", "b = 2\n", "b = 3\n"))  # upstream changed the same line
    conflicts = run.tmp / "conflicts"
    code, out = run.sync("--json", "--conflicts", str(conflicts))
    assert code == 1, out
    [patch] = json.loads(out)["patches"]
    [file] = patch["files"]
    named = blob_id(BASE.encode())[:7]
    assert file["note"] == f"three-way against upstream blob {named}"
    marked = Path(file["conflict_file"])
    assert marked.read_text().endswith(
        "<<<<<<< image /src/m.py\nb = 3\n"
        f"||||||| upstream blob {named}\nb = 2\n=======\nb = 20\n>>>>>>> ps/diff fix\n"
    )
    marked.write_text(run.nightly.decode().replace("b = 3\n", "b = 23\n"))
    resolve = ["resolve", "--recipe", str(run.tmp / "recipe.yaml"), "--conflicts", str(conflicts)]
    assert CliRunner().invoke(app, resolve).exit_code == 0
    code, out = run.sync("--json")
    assert code == 0, out
    doc = json.loads(out)
    assert (Path(doc["overlay"]) / "rootfs/src/m.py").read_bytes() == run.nightly.replace(
        b"b = 3\n", b"b = 23\n"
    )
    note = doc["patches"][0]["files"][0]["note"]
    assert note.startswith(f"three-way against upstream blob {named}; resolved by a recorded")
