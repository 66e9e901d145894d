"""Local diffs made from upstream code port three-way against the blob their `index` line
names, found in a real mirror; any other local diff is matched exactly, as before."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

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
from tests.upstream.test_local_blobs import blob_id, colliding

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
        note = f"matched exactly: upstream has no blob {named[:7]} to merge against"
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
