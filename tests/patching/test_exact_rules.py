"""Exact matching (local `diff:` patches), rule by rule: where a hunk lands, what each result
says, and the reason a person reads when it does not apply."""

from __future__ import annotations

from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkResult, HunkStatus, apply_exact, occurrences


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def hunk(old: str, new: str, start: int = 1) -> Hunk:
    return Hunk(f"@@ -{start} @@", start, tuple(lines(old)), tuple(lines(new)))


def test_overlapping_copies_of_a_block_are_all_found() -> None:
    assert occurrences(lines("a\na\na\n"), lines("a\na\n")) == [0, 1]
    assert occurrences(lines("a\nb\na\nb\n"), lines("a\nb\n")) == [0, 2]
    assert occurrences(lines("a\nb\n"), []) == []


def test_a_block_overlapping_its_own_copy_is_ambiguous() -> None:
    original = lines("x\na\na\na\ny\n")
    out, [result] = apply_exact(original, [hunk("a\na\n", "a\nA\n", start=2)])
    assert out == original
    assert result == HunkResult(
        result.hunk,
        HunkStatus.CONFLICT,
        reason="ambiguous: its block occurs more than once (lines 2, 3)",
    )


def test_filling_an_empty_file_reports_line_one() -> None:
    filled = Hunk("@@ -0,0 +1,2 @@", 0, (), ("a\n", "b\n"))
    _, results = apply_exact([], [filled])
    assert results == [HunkResult(filled, HunkStatus.APPLIED, 1)]
    _, [refused] = apply_exact(["x\n"], [filled])
    assert refused == HunkResult(
        filled,
        HunkStatus.CONFLICT,
        reason="it fills an empty file, and the image's file is not empty",
    )


def test_applied_and_present_results_name_the_hunk_and_its_line() -> None:
    text = "pad\npad2\na\nb\nc\n"
    change = hunk("a\nb\nc\n", "a\nB\nc\n", start=1)
    out, results = apply_exact(lines(text), [change])
    assert results == [HunkResult(change, HunkStatus.APPLIED, 3)]
    _, again = apply_exact(out, [change])
    assert again == [HunkResult(change, HunkStatus.PRESENT, 3)]


def test_a_hunk_that_changes_nothing_is_present_wherever_the_file_is() -> None:
    noop = hunk("a\nb\n", "a\nb\n")
    _, [absent] = apply_exact(lines("x\ny\n"), [noop])
    assert absent == HunkResult(noop, HunkStatus.PRESENT, None)
    _, [found] = apply_exact(lines("x\na\nb\n"), [noop])
    assert found == HunkResult(noop, HunkStatus.PRESENT, 2)


def test_holding_both_blocks_names_both_lines() -> None:
    text = "x\ny\nz\nmid\nx\nY\nz\n"
    change = hunk("x\ny\nz\n", "x\nY\nz\n", start=3)
    _, [result] = apply_exact(lines(text), [change])
    assert result.reason == (
        "the image holds both the block it changes (line 1) and the block it leaves (line 5)"
    )
    assert (result.status, result.line) == (HunkStatus.CONFLICT, None)


def test_the_new_block_twice_names_its_lines() -> None:
    text = "x\nY\nz\nmid\nx\nY\nz\n"
    _, [result] = apply_exact(lines(text), [hunk("x\ny\nz\n", "x\nY\nz\n")])
    assert result.reason == "ambiguous: its block occurs more than once (lines 1, 5)"


def test_a_missing_changed_line_is_quoted_without_its_newline() -> None:
    _, [result] = apply_exact(lines("a\nX\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert result.reason == "the image lacks line 'b' that the hunk changes"


def test_drifted_context_names_the_hunks_line() -> None:
    change = hunk("a\nb\nc\n", "a\nB\nc\n", start=7)
    _, [result] = apply_exact(lines("a\nchanged\nb\nc\n"), [change])
    assert result.reason == "its context does not match the image's file near line 7"
    pure_insert = Hunk("@@ -4,0 +5 @@", 4, (), ("new\n",))
    _, [inserted] = apply_exact(lines("a\n"), [pure_insert])
    assert inserted.reason == "it fills an empty file, and the image's file is not empty"
