"""Hunks against a file's lines: exact matching where the diff's blobs are unknown, and
strict replay of a diff onto the very file it was made from.

Exact matching (local `diff:` patches): a hunk is *applied* when the lines it
expects (context included, exactly) occur once and the lines it leaves do not,
*present* when the lines it leaves occur once and the lines it expects do not,
and a *conflict* otherwise. A block that occurs more than once is a conflict:
the nearest copy is a guess, and the wrong function holding an identical block
is a silent misapply.

Lines are split on `\\n` only, as diff splits them (not on U+2028 or a form feed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from patchkeeper.patching.diff import Hunk


class HunkStatus(StrEnum):
    APPLIED = "applied"  # its context matched the image exactly
    DRIFTED = "applied with drift"  # its context differed; the three-way merge placed it
    PRESENT = "present"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class HunkResult:
    hunk: Hunk
    status: HunkStatus
    line: int | None = None  # 1-based line in the image's file
    reason: str = ""


class ReplayError(Exception):
    """A diff does not describe the file it is said to be made from."""


def split_lines(text: str) -> list[str]:
    """Lines with their `\\n`, split on `\\n` alone (the last may lack one)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def replay(lines: Sequence[str], hunks: Sequence[Hunk]) -> list[str]:
    """Apply `hunks` exactly at their stated lines (the diff was made from `lines`)."""
    out: list[str] = []
    done = 0
    for hunk in hunks:
        at = hunk.at
        if at < done or list(lines[at : at + len(hunk.old)]) != list(hunk.old):
            raise ReplayError(f"hunk {hunk.header} does not match its base file")
        out += lines[done:at]
        out += hunk.new
        done = at + len(hunk.old)
    return out + list(lines[done:])


def occurrences(lines: Sequence[str], block: Sequence[str]) -> list[int]:
    if not block:
        return []
    size, first = len(block), block[0]
    found: list[int] = []
    start = 0
    while True:
        try:
            i = lines.index(first, start)
        except ValueError:
            return found
        if list(lines[i : i + size]) == list(block):
            found.append(i)
        start = i + 1


def apply_exact(lines: list[str], hunks: Sequence[Hunk]) -> tuple[list[str], list[HunkResult]]:
    """Apply what is missing by exact matching; the new lines and one result per hunk."""
    result = list(lines)
    outcomes = []
    for hunk in hunks:
        if not hunk.old and not result and hunk.at == 0:  # filling an empty file
            result[:] = hunk.new
            outcomes.append(HunkResult(hunk, HunkStatus.APPLIED, 1))
            continue
        at_old = occurrences(result, hunk.old)
        at_new = occurrences(result, hunk.new)
        if hunk.old == hunk.new or (not at_old and len(at_new) == 1):
            outcomes.append(HunkResult(hunk, HunkStatus.PRESENT, at_new[0] + 1 if at_new else None))
        elif len(at_old) == 1 and not at_new:
            at = at_old[0]
            result[at : at + len(hunk.old)] = hunk.new
            outcomes.append(HunkResult(hunk, HunkStatus.APPLIED, at + 1))
        else:
            reason = _why_not(result, hunk, at_old, at_new)
            outcomes.append(HunkResult(hunk, HunkStatus.CONFLICT, reason=reason))
    return result, outcomes


def _why_not(lines: Sequence[str], hunk: Hunk, at_old: list[int], at_new: list[int]) -> str:
    if not hunk.old:
        return "it fills an empty file, and the image's file is not empty"
    if at_old and at_new:
        return (
            f"the image holds both the block it changes (line {at_old[0] + 1}) "
            f"and the block it leaves (line {at_new[0] + 1})"
        )
    if len(at_old) > 1 or len(at_new) > 1:
        where = ", ".join(str(i + 1) for i in (at_old if len(at_old) > 1 else at_new))
        return f"ambiguous: its block occurs more than once (lines {where})"
    removed = [line for line in hunk.old if line not in hunk.new]
    missing = [line for line in removed if line not in lines]
    if missing:
        return f"the image lacks line {missing[0].rstrip()!r} that the hunk changes"
    return f"its context does not match the image's file near line {hunk.at + 1}"
