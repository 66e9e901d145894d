"""Where a hunk lands when its block occurs more than once, and why it does not."""

from __future__ import annotations

from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkStatus, apply_hunks
from tests.patching.test_hunks import hunk, lines


def test_a_second_hunk_is_expected_where_the_first_one_moved_the_file() -> None:
    # The first hunk lands 5 lines below its diff position and adds a line, so the
    # second is expected 6 lines below its own: of the four copies of its block, the
    # one there (index 14 after the first hunk) is the only one at distance 0.
    before = [f"p{i}\n" for i in range(7)] + ["a\n"] + [f"f{i}\n" for i in range(10)]
    for index in (10, 13, 15, 16):  # 11, 14, 16, 17 once the first hunk added its line
        before[index] = "x\n"
    first = hunk("a\n", "A\nA2\n", start=3)
    second = hunk("x\n", "X\n", start=9)
    out, results = apply_hunks(before, [first, second])
    assert [(r.status, r.line) for r in results] == [
        (HunkStatus.APPLIED, 8),
        (HunkStatus.APPLIED, 15),
    ]
    assert [i for i, line in enumerate(out) if line == "X\n"] == [14]


def test_a_hunk_at_the_top_is_expected_at_line_one() -> None:
    out, [result] = apply_hunks(lines("x\ny\nx\n"), [hunk("x\n", "X\n", start=1)])
    assert (result.status, result.line) == (HunkStatus.APPLIED, 1)
    assert out == lines("X\ny\nx\n")


def test_equal_distances_are_a_conflict_wherever_the_copies_are() -> None:
    text = lines("p\nx\nq\nr\ns\nx\n")  # copies at 1 and 5, expected at 3
    out, [result] = apply_hunks(text, [hunk("x\n", "X\n", start=4)])
    assert result.status is HunkStatus.CONFLICT and out == text
    assert result.reason == "ambiguous: its lines occur twice at the same distance"


def test_a_result_present_twice_at_equal_distance_is_ambiguous() -> None:
    text = lines("X\nq\nX\n")
    _, [result] = apply_hunks(text, [hunk("x\n", "X\n", start=2)])
    assert result.status is HunkStatus.CONFLICT
    assert result.reason == "ambiguous: its lines occur twice at the same distance"


def test_when_old_and_new_are_equally_near_the_hunk_is_present() -> None:
    text = lines("a\nmid\nA\n")  # old at 0, new at 2, expected at 1
    out, [result] = apply_hunks(text, [hunk("a\n", "A\n", start=2)])
    assert (result.status, result.line) == (HunkStatus.PRESENT, 3)
    assert out == text


def test_a_context_only_hunk_is_present_even_where_its_lines_are_gone() -> None:
    same = Hunk("@@ -1,1 +1,1 @@", 1, ("gone\n",), ("gone\n",))
    _, [result] = apply_hunks(lines("a\n"), [same])
    assert (result.status, result.line) == (HunkStatus.PRESENT, None)


def test_a_single_line_block_absent_from_the_file_conflicts_naming_the_line() -> None:
    _, [result] = apply_hunks(lines("a\nb\n"), [hunk("x\n", "X\n", start=1)])
    assert result.reason == "the image lacks line 'x' that the hunk changes"


def test_drifted_context_names_the_line_it_was_expected_at() -> None:
    text = lines("0\n1\n2\nold\nnew context\n")
    _, [result] = apply_hunks(text, [hunk("2\nold\nctx\n", "2\nNEW\nctx\n", start=3)])
    assert result.status is HunkStatus.CONFLICT and result.line is None
    assert result.reason == "its context does not match the image's file near line 3"


def test_the_nearer_of_old_and_new_decides_applied_or_present() -> None:
    text = lines("p\nA\np2\np3\np4\na\n")  # new at 1, old at 5, expected at 4
    first = hunk("a\n", "A\n", start=5)
    out, [result] = apply_hunks(text, [first])
    assert (result.hunk, result.status, result.line) == (first, HunkStatus.APPLIED, 6)
    assert out == lines("p\nA\np2\np3\np4\nA\n")


def test_a_conflicting_hunk_does_not_stop_the_next_one() -> None:
    bad, good = hunk("zz\n", "ZZ\n", start=1), hunk("b\n", "B\n", start=2)
    out, results = apply_hunks(lines("a\nb\n"), [bad, good])
    assert [(r.hunk, r.status) for r in results] == [
        (bad, HunkStatus.CONFLICT),
        (good, HunkStatus.APPLIED),
    ]
    assert out == lines("a\nB\n")
