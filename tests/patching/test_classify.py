"""`classify` alone: what the base->ours alignment says of each hunk, for alignments
real merges rarely produce side by side (hand-made regions; the git-backed cases are
in test_three_way*.py)."""

from __future__ import annotations

from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.merge import Region, classify, merge

BASE = [f"l{i}\n" for i in range(10)]
# Three lines of context either side of a one-line change of base line 4 (0-based).
HUNK = Hunk("@@ -2,7 +2,7 @@", 2, tuple(BASE[1:8]), (*BASE[1:4], "X\n", *BASE[5:8]))


def one(
    regions: list[Region], ours: list[str] | None = None, clean: bool = True
) -> tuple[HunkStatus, int | None, str]:
    [result] = classify([HUNK], BASE, ours or BASE, regions, clean)
    assert result.hunk is HUNK
    return result.status, result.line, result.reason


def test_untouched_context_applies_where_earlier_image_edits_moved_it() -> None:
    assert one([]) == (HunkStatus.APPLIED, 2, "")
    assert one([Region(0, 1, 0, 3)]) == (HunkStatus.APPLIED, 4, "")  # l0 became 3 lines
    # image edits that end where the hunk starts, or start where it ends, are not drift
    assert one([Region(0, 1, 0, 1)]) == (HunkStatus.APPLIED, 2, "")
    assert one([Region(8, 9, 8, 9)]) == (HunkStatus.APPLIED, 2, "")
    assert one([Region(1, 1, 1, 2)]) == (HunkStatus.APPLIED, 3, "")  # inserted before it
    assert one([Region(8, 8, 8, 9)]) == (HunkStatus.APPLIED, 2, "")  # inserted after it


def test_an_image_edit_in_the_context_is_drift_reported_at_the_change() -> None:
    assert one([Region(1, 2, 1, 2)]) == (HunkStatus.DRIFTED, 5, "")  # l1 edited
    assert one([Region(1, 2, 1, 3)]) == (HunkStatus.DRIFTED, 6, "")  # l1 became 2 lines
    assert one([Region(7, 8, 7, 8)]) == (HunkStatus.DRIFTED, 5, "")  # l7, the last context
    assert one([Region(3, 3, 3, 4)]) == (HunkStatus.DRIFTED, 6, "")  # a line inserted in it


def test_an_image_edit_at_the_change_of_a_clean_merge_is_drift_there() -> None:
    ours = [*BASE[:3], "L3a\n", "L3b\n", *BASE[4:]]  # l3, next to the change, is 2 lines
    assert one([Region(3, 4, 3, 5)], ours) == (HunkStatus.DRIFTED, 6, "")


def test_the_same_edit_in_a_conflicting_merge_is_a_conflict_naming_both_sides() -> None:
    ours = [*BASE[:3], "L3a\n", "L3b\n", *BASE[4:]]
    status, line, reason = one([Region(3, 4, 3, 5)], ours, clean=False)
    assert (status, line) == (HunkStatus.CONFLICT, 4)
    assert reason == (
        "the image changed lines 4-5 ('L3a') where the PR changes base lines 5-5 ('l4')"
    )


def test_the_change_already_in_the_image_is_present_where_it_sits_now() -> None:
    grown = Hunk("@@ -2,7 +2,8 @@", 2, HUNK.old, (*BASE[1:4], "X\n", "Y\n", *BASE[5:8]))
    ours = ["A\n", "B\n", "C\n", *BASE[1:4], "X\n", "Y\n", *BASE[5:]]  # l0 -> A B C
    regions = [Region(0, 1, 0, 3), Region(4, 5, 6, 8)]
    [result] = classify([grown], BASE, ours, regions, True)
    assert (result.hunk, result.status, result.line) == (grown, HunkStatus.PRESENT, 7)
    other = [*ours[:6], "Z\n", "Y\n", *ours[8:]]  # changed otherwise: not present
    [result] = classify([grown], BASE, other, regions, True)
    assert result.status is HunkStatus.DRIFTED


def test_git_s_conflict_makes_every_hunk_not_present_a_conflict() -> None:
    """No hunk's region explains the conflict git reported: none may pass as ported."""
    far = Hunk("@@ -10 +10 @@", 10, (BASE[9],), ("Z\n",))
    present = Hunk("@@ -5 +5 @@", 5, (BASE[4],), ("X\n",))
    ours = [*BASE[:4], "X\n", *BASE[5:]]
    results = classify([present, far], BASE, ours, [Region(4, 5, 4, 5)], False)
    assert [(r.hunk, r.status, r.line, r.reason) for r in results] == [
        (present, HunkStatus.PRESENT, 5, ""),
        (far, HunkStatus.CONFLICT, 10, "git merge-file reports a conflict"),
    ]


def test_an_image_that_is_the_base_or_the_result_keeps_all_three_texts() -> None:
    """`marked` rebuilds the conflict file from them, whichever way the merge went."""
    theirs = "".join([*BASE[:4], "X\n", *BASE[5:]])
    for ours in ("".join(BASE), theirs):
        merged = merge(ours, "".join(BASE), theirs, [HUNK], ("image", "base", "pr"))
        assert (merged.ours, merged.base, merged.theirs) == (ours, "".join(BASE), theirs)
