"""Classify and apply hunks against the image's own file: never silent fuzz.

A hunk is *present* when the lines it leaves are already there and the lines
it expects are not (a cherry-pick or an earlier port), *applicable* when the
lines it expects (context included, exactly) are there, and *conflicting*
otherwise. When a block occurs several times, the occurrence nearest the
hunk's expected line wins; a tie is a conflict rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from patchkeeper.patching.diff import Hunk


class HunkStatus(StrEnum):
    APPLIED = "applied"
    PRESENT = "present"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class HunkResult:
    hunk: Hunk
    status: HunkStatus
    line: int | None = None  # 1-based line in the file where it was found
    reason: str = ""


def _occurrences(lines: Sequence[str], block: Sequence[str]) -> list[int]:
    if not block:
        return []
    size, first = len(block), block[0]
    return [
        i
        for i in range(len(lines) - size + 1)
        if lines[i] == first and list(lines[i : i + size]) == list(block)
    ]


def _nearest(candidates: list[int], expected: int) -> int | None:
    """The unique candidate closest to `expected`, or None on a tie."""
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda i: abs(i - expected))
    if len(ranked) > 1 and abs(ranked[0] - expected) == abs(ranked[1] - expected):
        return None
    return ranked[0]


def apply_hunks(lines: list[str], hunks: Sequence[Hunk]) -> tuple[list[str], list[HunkResult]]:
    """Apply what is missing; return the new lines and one result per hunk."""
    result = list(lines)
    outcomes = []
    shift = 0  # how far the file has drifted from the diff's line numbers
    for hunk in hunks:
        expected = max(hunk.old_start - 1, 0) + shift
        at_old = _nearest(_occurrences(result, hunk.old), expected)
        at_new = _nearest(_occurrences(result, hunk.new), expected)
        if hunk.old == hunk.new:
            status, at = HunkStatus.PRESENT, at_new
        elif at_old is not None and (
            at_new is None or abs(at_old - expected) < abs(at_new - expected)
        ):
            result[at_old : at_old + len(hunk.old)] = hunk.new
            status, at = HunkStatus.APPLIED, at_old
        elif at_new is not None:
            status, at = HunkStatus.PRESENT, at_new
        else:
            outcomes.append(
                HunkResult(hunk, HunkStatus.CONFLICT, reason=_why_not(result, hunk, expected))
            )
            continue
        if at is not None:
            shift = at - (hunk.old_start - 1) + len(hunk.new) - len(hunk.old)
        outcomes.append(HunkResult(hunk, status, None if at is None else at + 1))
    return result, outcomes


def _why_not(lines: Sequence[str], hunk: Hunk, expected: int) -> str:
    if len(_occurrences(lines, hunk.old)) > 1 or len(_occurrences(lines, hunk.new)) > 1:
        return "ambiguous: its lines occur twice at the same distance"
    removed = [line for line in hunk.old if line not in hunk.new]
    missing = [line for line in removed if line not in lines]
    if missing:
        return f"the image lacks line {missing[0].rstrip()!r} that the hunk changes"
    return f"its context does not match the image's file near line {expected + 1}"
