from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkStatus, apply_hunks


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def hunk(old: str, new: str, start: int = 1) -> Hunk:
    return Hunk(f"@@ -{start} @@", start, tuple(lines(old)), tuple(lines(new)))


def test_applies_when_context_matches_exactly() -> None:
    out, [result] = apply_hunks(lines("a\nb\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert "".join(out) == "a\nB\nc\n"
    assert result.status is HunkStatus.APPLIED and result.line == 1


def test_present_when_the_change_is_already_there() -> None:
    out, [result] = apply_hunks(lines("a\nB\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert "".join(out) == "a\nB\nc\n"
    assert result.status is HunkStatus.PRESENT


def test_conflict_names_the_missing_line_and_changes_nothing() -> None:
    original = lines("a\nX\nc\n")
    out, [result] = apply_hunks(original, [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert out == original
    assert result.status is HunkStatus.CONFLICT
    assert "'b'" in result.reason


def test_context_drift_is_a_conflict_not_fuzz() -> None:
    _, [result] = apply_hunks(lines("a\nchanged\nb\nc\n"), [hunk("a\nb\nc\n", "a\nB\nc\n")])
    assert result.status is HunkStatus.CONFLICT


def test_moved_block_applies_at_its_new_place() -> None:
    text = "".join(f"pad{i}\n" for i in range(10)) + "a\nb\nc\n"
    out, [result] = apply_hunks(lines(text), [hunk("a\nb\nc\n", "a\nB\nc\n", start=1)])
    assert result.status is HunkStatus.APPLIED and result.line == 11
    assert out[-2] == "B\n"


def test_nearest_of_two_occurrences_wins_and_a_tie_conflicts() -> None:
    block = "x\ny\nz\n"
    text = block + "mid\n" + block
    out, [result] = apply_hunks(lines(text), [hunk(block, "x\nY\nz\n", start=5)])
    assert result.status is HunkStatus.APPLIED and result.line == 5
    assert "".join(out) == block + "mid\nx\nY\nz\n"
    equal = block + "m\n" + block  # occurrences at 0 and 4, expected index 2: a tie
    _, [result] = apply_hunks(lines(equal), [hunk(block, "x\nY\nz\n", start=3)])
    assert result.status is HunkStatus.CONFLICT
    assert "ambiguous" in result.reason


def test_later_hunks_follow_the_drift_of_earlier_ones() -> None:
    text = lines("".join(f"l{i}\n" for i in range(20)))
    first = hunk("l1\nl2\nl3\n", "l1\nnew\nnew2\nl2\nl3\n", start=2)
    second = hunk("l10\nl11\nl12\n", "l10\nL11\nl12\n", start=11)
    out, results = apply_hunks(text, [first, second])
    assert [r.status for r in results] == [HunkStatus.APPLIED, HunkStatus.APPLIED]
    assert results[1].line == 13
    assert "L11\n" in out and "l11\n" not in out
