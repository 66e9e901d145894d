"""The resolution store and the conflicts index, as files a person commits and reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from patchkeeper.demo.history import Edit
from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.conflicts import INDEX, write_conflicts
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, port
from patchkeeper.patching.resolutions import Resolution, load, record
from tests.patching.conftest import ROOT, PrHistory, image, local

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]
PAD = "".join(f"# {i}\n" for i in range(8))


def hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_entry_is_named_by_path_file_and_diff_and_holds_readable_json(tmp_path: Path) -> None:
    patchset = tmp_path / "ps.yaml"
    resolution = Resolution(ROOT / "m.py", b"ours\n", "d" * 64, b"resolved\n")
    entry = record(patchset, "pr-1", resolution)
    path_id, ours_id = hexdigest(b"/src/m.py")[:12], hexdigest(b"ours\n")[:12]
    assert entry == tmp_path / "ps.resolutions" / "pr-1" / f"{path_id}-{ours_id}-{'d' * 12}"
    meta = {
        "path": "/src/m.py",
        "ours_sha256": hexdigest(b"ours\n"),
        "diff_sha256": "d" * 64,
        "resolved_sha256": hexdigest(b"resolved\n"),
    }
    assert (entry / "resolution.json").read_text() == json.dumps(meta, indent=2) + "\n"
    assert (entry / "ours").read_bytes() == b"ours\n"
    assert (entry / "resolved").read_bytes() == b"resolved\n"


def test_recording_the_same_key_again_replaces_the_resolution(tmp_path: Path) -> None:
    patchset = tmp_path / "ps.yaml"
    first = Resolution(ROOT / "m.py", b"ours\n", "d" * 64, b"first\n")
    second = Resolution(ROOT / "m.py", b"ours\n", "d" * 64, b"second\n")
    other_file = Resolution(ROOT / "n.py", b"ours\n", "d" * 64, b"n\n")
    other_diff = Resolution(ROOT / "m.py", b"ours\n", "e" * 64, b"e\n")
    entries = {record(patchset, "pr-1", r) for r in (first, second, other_file, other_diff)}
    assert len(entries) == 3
    assert set(load(patchset, "pr-1")) == {second, other_file, other_diff}
    assert load(patchset, "pr-2") == ()


def three_files(make_upstream: MakeUpstream) -> tuple[PrHistory, dict[str, bytes | None]]:
    """PR 1 changes pkg/a.py (ports) and pkg/b.py, pkg/c.py (both conflict in the image)."""
    base = {name: f"{name} = 1\n{PAD}end = 0\n".encode() for name in ("a", "b", "c")}
    up = make_upstream({f"pkg/{name}.py": data for name, data in base.items()})
    edits = [Edit(f"pkg/{n}.py", "end = 0\n", "end = 10\n") for n in ("a", "b", "c")]
    up.history.squash_pr(1, "Ends", edits)
    ours = {f"pkg/{n}.py": base[n].replace(b"end = 0", b"end = 2") for n in ("b", "c")}
    return up, {"pkg/a.py": base["a"], **ours}


def test_every_conflicting_file_of_a_change_is_written_with_its_index_entry(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    up, files = three_files(make_upstream)
    result = port([up.change(1)], image(files))
    [outcome] = result.conflicts
    assert [f.action for f in outcome.files] == [
        FileAction.PATCHED,
        FileAction.CONFLICT,
        FileAction.CONFLICT,
    ]
    directory = tmp_path / "deep" / "conflicts"
    written = write_conflicts(result.conflicts, directory)
    change = outcome.change
    assert written == {
        (change.id, "/src/pkg/b.py"): directory / change.id / "src/pkg/b.py",
        (change.id, "/src/pkg/c.py"): directory / change.id / "src/pkg/c.py",
    }
    for name in ("b", "c"):
        ours = directory / ".ours" / change.id / f"src/pkg/{name}.py"
        assert ours.read_bytes() == files[f"pkg/{name}.py"]
        marked = (directory / change.id / f"src/pkg/{name}.py").read_text()
        assert marked.startswith(f"{name} = 1\n") and "||||||| base" in marked
    index = json.loads((directory / INDEX).read_text())
    assert (directory / INDEX).read_text() == json.dumps(index, indent=2) + "\n"
    assert index["format"] == 1
    [hunk] = outcome.files[1].hunks
    assert index["files"][0] == {
        "patch": change.id,
        "patchset": "ps",
        "patch_key": "pr-1",
        "label": "PR #1",
        "path": "/src/pkg/b.py",
        "file": f"{change.id}/src/pkg/b.py",
        "ours": f".ours/{change.id}/src/pkg/b.py",
        "ours_sha256": hexdigest(files["pkg/b.py"] or b""),
        "marked_sha256": hexdigest((directory / change.id / "src/pkg/b.py").read_bytes()),
        "diff_sha256": change.diff_sha256,
        "hunks": [{"header": hunk.hunk.header, "line": hunk.line, "reason": hunk.reason}],
    }
    assert (hunk.line, hunk.reason) == (
        10,
        "the image changed lines 10-10 ('end = 2') where the PR changes base lines 10-10 "
        "('end = 0')",
    )
    assert [e["path"] for e in index["files"]] == ["/src/pkg/b.py", "/src/pkg/c.py"]


def test_a_local_diffs_conflict_has_no_three_way_text_to_write(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    up, files = three_files(make_upstream)
    result = port([local(up.change(1))], image(files))
    [outcome] = result.conflicts
    assert outcome.files[1].ours == files["pkg/b.py"] and outcome.files[1].marked == ""
    directory = tmp_path / "not" / "yet"  # made, parents too, for the index alone
    assert write_conflicts(result.conflicts, directory) == {}
    assert json.loads((directory / INDEX).read_text()) == {"format": 1, "files": []}
    assert sorted(p.name for p in directory.iterdir()) == [INDEX]


def conflict_b(make_upstream: MakeUpstream) -> tuple[PrHistory, bytes]:
    base = f"b = 1\n{PAD}end = 0\n".encode()
    up = make_upstream({"b.py": base})
    up.history.squash_pr(1, "End", [Edit("b.py", "end = 0\n", "end = 10\n")])
    return up, base.replace(b"end = 0", b"end = 2")


def test_a_reused_resolution_is_noted_and_its_hunks_placed(
    make_upstream: MakeUpstream,
) -> None:
    up, ours = conflict_b(make_upstream)
    parsed = up.change(1)
    resolved = ours.replace(b"end = 2", b"end = 12")
    recorded = [Resolution(ROOT / "b.py", ours, parsed.change.diff_sha256, resolved)]
    [as_recorded] = port([parsed.with_resolutions(recorded)], image({"b.py": ours})).outcomes
    [file] = as_recorded.files
    [hunk] = file.hunks
    assert (file.action, file.note) == (FileAction.PATCHED, "resolved by a recorded resolution")
    assert (hunk.status, hunk.line, hunk.reason) == (
        HunkStatus.DRIFTED,
        10,
        "placed by a recorded resolution",
    )
    moved = ours.replace(b"b = 1", b"b = 100")
    result = port([parsed.with_resolutions(recorded)], image({"b.py": moved}))
    [file] = result.outcomes[0].files
    assert file.note == "resolved by a recorded resolution, merged onto a changed image file"
    assert result.changed_files() == {ROOT / "b.py": resolved.replace(b"b = 1", b"b = 100")}


def test_a_resolution_that_is_not_utf8_is_refused_naming_the_file(
    make_upstream: MakeUpstream,
) -> None:
    up, ours = conflict_b(make_upstream)
    parsed = up.change(1)
    cases = [(b"\xff\n", b"fine\n"), (b"other\n", b"\xff\n"), (ours, b"\xff\n")]
    for recorded_ours, resolved in cases:
        bad = Resolution(ROOT / "b.py", recorded_ours, parsed.change.diff_sha256, resolved)
        with pytest.raises(UnsafeInputError) as err:
            port([parsed.with_resolutions([bad])], image({"b.py": ours}))
        assert str(err.value) == "resolution of /src/b.py: the file is not UTF-8 text"
