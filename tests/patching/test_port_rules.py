"""Porting rules, outcome by outcome: every field of what `port` reports is pinned, since
the report (and the lock) is how a user learns what was and was not ported."""

from __future__ import annotations

from pathlib import PurePosixPath

from patchkeeper.patching.diff import FileChange
from patchkeeper.patching.hunks import HunkResult, HunkStatus
from patchkeeper.patching.port import FileAction, FileOutcome, PatchOutcome, PatchState, port
from tests.patching.changes import ROOT, change, modify

ADD = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+hello\n+world\n"
DELETE = "--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
RENAME = (
    "diff --git a/old.py b/new.py\nsimilarity index 50%\nrename from old.py\nrename to new.py\n"
    "--- a/old.py\n+++ b/new.py\n@@ -1,2 +1,2 @@\n ctx\n-v1\n+v2\n"
)


def only(diff: str, vanilla: dict[PurePosixPath, bytes | None]) -> tuple[PatchOutcome, dict]:
    result = port([change("c", diff)], vanilla)
    [outcome] = result.outcomes
    return outcome, result.changed_files()


def test_an_added_file_already_there_byte_for_byte_is_upstream() -> None:
    outcome, changed = only(ADD, {ROOT / "new.py": b"hello\nworld\n"})
    [file] = outcome.files
    [hunk] = change("c", ADD).files[0].hunks
    assert file == FileOutcome(
        ROOT / "new.py",
        FileChange.ADDED,
        FileAction.UNCHANGED,
        (HunkResult(hunk, HunkStatus.PRESENT, 1),),
    )
    assert (outcome.state, outcome.via, changed) == (PatchState.UPSTREAM, "content", {})


def test_an_added_file_that_differs_from_the_images_is_a_conflict() -> None:
    outcome, changed = only(ADD, {ROOT / "new.py": b"hello\n"})
    [file] = outcome.files
    [hunk] = change("c", ADD).files[0].hunks
    reason = "the image has another file here"
    assert file == FileOutcome(
        ROOT / "new.py",
        FileChange.ADDED,
        FileAction.CONFLICT,
        (HunkResult(hunk, HunkStatus.CONFLICT, reason=reason),),
        "added upstream, differs",
    )
    assert outcome.state is PatchState.CONFLICT and changed == {}


def test_a_rename_ports_the_old_files_content_to_the_new_path() -> None:
    vanilla = {ROOT / "old.py": b"ctx\nv1\n", ROOT / "new.py": None}
    outcome, changed = only(RENAME, vanilla)
    [file] = outcome.files
    assert (file.path, file.kind, file.action) == (
        ROOT / "new.py",
        FileChange.RENAMED,
        FileAction.CREATED,
    )
    assert file.note == "renamed from old.py; the old file stays in the image"
    assert [(h.status, h.line) for h in file.hunks] == [(HunkStatus.APPLIED, 1)]
    assert changed == {ROOT / "new.py": b"ctx\nv2\n"}
    assert outcome.state is PatchState.APPLIED


def test_a_rename_onto_an_existing_file_patches_that_file() -> None:
    vanilla = {ROOT / "old.py": b"ctx\nv1\n", ROOT / "new.py": b"ctx\nv1\nmine\n"}
    outcome, changed = only(RENAME, vanilla)
    [file] = outcome.files
    assert (file.action, file.note) == (FileAction.PATCHED, "")
    assert changed == {ROOT / "new.py": b"ctx\nv2\nmine\n"}


def test_a_modified_file_absent_from_the_image_is_a_conflict_with_no_hunks() -> None:
    outcome, _ = only(modify("a.py", "old", "new"), {ROOT / "a.py": None})
    assert outcome.files == (
        FileOutcome(
            ROOT / "a.py", FileChange.MODIFIED, FileAction.CONFLICT, note="absent from the image"
        ),
    )
    assert outcome.state is PatchState.CONFLICT


def test_a_conflicting_hunk_leaves_the_file_as_the_image_has_it() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nother\n"}
    result = port([change("c", modify("a.py", "old", "new"))], vanilla)
    [outcome] = result.outcomes
    [file] = outcome.files
    assert (file.path, file.kind, file.action, file.note) == (
        ROOT / "a.py",
        FileChange.MODIFIED,
        FileAction.CONFLICT,
        "",
    )
    assert [h.status for h in file.hunks] == [HunkStatus.CONFLICT]
    assert (outcome.state, outcome.via) == (PatchState.CONFLICT, "")
    assert result.current == vanilla and result.changed_files() == {}
    assert outcome.count(HunkStatus.CONFLICT) == 1 and outcome.count(HunkStatus.APPLIED) == 0


def test_hunks_are_counted_per_status_across_files() -> None:
    vanilla = {
        ROOT / "a.py": b"ctx\nnew\n",
        ROOT / "b.py": b"ctx\nold\n",
        ROOT / "c.py": b"ctx\nold\n",
    }
    diff = (
        modify("a.py", "old", "new") + modify("b.py", "old", "new") + modify("c.py", "old", "new")
    )
    outcome, changed = only(diff, vanilla)
    assert (outcome.count(HunkStatus.PRESENT), outcome.count(HunkStatus.APPLIED)) == (1, 2)
    assert outcome.state is PatchState.PARTIAL
    assert sorted(changed) == [ROOT / "b.py", ROOT / "c.py"]


def test_paths_to_read_cover_old_and_new_names() -> None:
    assert change("c", RENAME).paths_to_read() == {ROOT / "old.py", ROOT / "new.py"}
    assert change("c", ADD).paths_to_read() == {ROOT / "new.py"}


def test_exclude_globs_match_repository_paths() -> None:
    vanilla = {ROOT / "docs/a.md": None, ROOT / "a.py": b"ctx\nold\n"}
    diff = modify("docs/a.md", "old", "new") + modify("a.py", "old", "new")
    [outcome] = port([change("c", diff, exclude=("docs/*",))], vanilla).outcomes
    assert [f.action for f in outcome.files] == [FileAction.EXCLUDED, FileAction.PATCHED]
    assert outcome.files[0] == FileOutcome(
        ROOT / "docs/a.md", FileChange.MODIFIED, FileAction.EXCLUDED
    )


def test_changes_after_one_upstream_by_ancestry_are_still_ported() -> None:
    first, second = change("one", modify("a.py", "old", "new")), change("two", ADD)
    result = port(
        [first, second], {ROOT / "a.py": b"ctx\nold\n", ROOT / "new.py": None}, {first.change.id}
    )
    assert [(o.change, o.state, o.via) for o in result.outcomes] == [
        (first.change, PatchState.UPSTREAM, "ancestry"),
        (second.change, PatchState.APPLIED, ""),
    ]
    assert result.changed_files() == {ROOT / "new.py": b"hello\nworld\n"}
