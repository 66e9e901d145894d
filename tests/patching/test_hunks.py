import pytest

from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkStatus, ReplayError, apply_exact, replay, split_lines


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def hunk(old: str, new: str, start: int = 1) -> Hunk:
    return Hunk(f"@@ -{start} @@", start, tuple(lines(old)), tuple(lines(new)))


def test_applies_when_context_matches_exactly() -> None:
    out, [result] = apply_exact(lines("a\nb\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert "".join(out) == "a\nB\nc\n"
    assert result.status is HunkStatus.APPLIED and result.line == 1


def test_present_when_the_change_is_already_there() -> None:
    out, [result] = apply_exact(lines("a\nB\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert "".join(out) == "a\nB\nc\n"
    assert result.status is HunkStatus.PRESENT


def test_conflict_names_the_missing_line_and_changes_nothing() -> None:
    original = lines("a\nX\nc\n")
    out, [result] = apply_exact(original, [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert out == original
    assert result.status is HunkStatus.CONFLICT
    assert "'b'" in result.reason


def test_context_drift_is_a_conflict_not_fuzz() -> None:
    _, [result] = apply_exact(lines("a\nchanged\nb\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert result.status is HunkStatus.CONFLICT


def test_moved_block_applies_at_its_new_place() -> None:
    text = "".join(f"pad{i}\n" for i in range(10)) + "a\nb\nc\n"
    out, [result] = apply_exact(lines(text), [hunk("a\nb\nc\n", "a\nB\nc\n", start=1)])
    assert result.status is HunkStatus.APPLIED and result.line == 11
    assert out[-2] == "B\n"


def test_a_block_that_occurs_twice_is_a_conflict_whatever_the_distance() -> None:
    block = "x\ny\nz\n"
    text = block + "mid\n" + block
    out, [result] = apply_exact(lines(text), [hunk(block, "x\nY\nz\n", start=5)])
    assert result.status is HunkStatus.CONFLICT and out == lines(text)
    assert "occurs more than once (lines 1, 5)" in result.reason


def test_old_and_new_block_both_present_is_a_conflict() -> None:
    text = "x\ny\nz\nmid\nx\nY\nz\n"
    _, [result] = apply_exact(lines(text), [hunk("x\ny\nz\n", "x\nY\nz\n", start=3)])
    assert result.status is HunkStatus.CONFLICT and "holds both" in result.reason


def test_filling_an_empty_file() -> None:
    filled = Hunk("@@ -0,0 +1,2 @@", 0, (), ("a\n", "b\n"))
    out, [result] = apply_exact([], [filled])
    assert out == ["a\n", "b\n"] and result.status is HunkStatus.APPLIED
    _, [refused] = apply_exact(["x\n"], [filled])
    assert refused.status is HunkStatus.CONFLICT and "empty file" in refused.reason


def test_split_lines_splits_on_newline_only() -> None:
    assert split_lines("a\u2028b\x0cc\r\nd") == ["a\u2028b\x0cc\r\n", "d"]
    assert split_lines("") == [] and split_lines("a\n") == ["a\n"]


def test_replay_refuses_a_diff_that_does_not_describe_its_base() -> None:
    good = hunk("a\nb\n", "a\nB\n")
    assert replay(lines("a\nb\nc\n"), [good]) == lines("a\nB\nc\n")
    with pytest.raises(ReplayError, match="does not match its base"):
        replay(lines("a\nX\nc\n"), [good])


def test_later_hunks_follow_the_drift_of_earlier_ones() -> None:
    text = lines("".join(f"l{i}\n" for i in range(20)))
    first = hunk("l1\nl2\nl3\n", "l1\nnew\nnew2\nl2\nl3\n", start=2)
    second = hunk("l10\nl11\nl12\n", "l10\nL11\nl12\n", start=11)
    out, results = apply_exact(text, [first, second])
    assert [r.status for r in results] == [HunkStatus.APPLIED, HunkStatus.APPLIED]
    assert results[1].line == 13
    assert "L11\n" in out and "l11\n" not in out


def test_the_new_block_twice_is_not_proof_that_the_hunk_is_present() -> None:
    text = "x\nY\nz\nmid\nx\nY\nz\n"
    _, [result] = apply_exact(lines(text), [hunk("x\ny\nz\n", "x\nY\nz\n")])
    assert result.status is HunkStatus.CONFLICT and "occurs more than once" in result.reason
