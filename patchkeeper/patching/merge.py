"""Three-way merge of one file with git's own merge, and what it did to each hunk.

`git merge-file --diff3` merges ours (the image's file, after earlier patches)
with theirs (the PR's result) against base (the file the PR was made from); a
file ports only when the merge has no conflict region. Where the image's file
differs from the base, `git diff --no-index` (the same xdiff) aligns the two,
and that alignment says, per hunk of the PR, whether its context was intact
(`applied`), edited by unrelated changes (`applied with drift`), already
changed the same way (`present`) or changed otherwise (`conflict`). Both git
processes run at once: together they cost about one merge.
"""

from __future__ import annotations

import bisect
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.diff import Hunk
from patchkeeper.patching.hunks import HunkResult, HunkStatus, split_lines

_RANGE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)
_GIT = ("git", "-c", "core.autocrlf=false", "-c", "core.attributesFile=/dev/null")


@dataclass(frozen=True)
class Region:
    """Lines [base_start, base_end) of the base are lines [ours_start, ours_end) of ours."""

    base_start: int
    base_end: int
    ours_start: int
    ours_end: int

    @property
    def delta(self) -> int:
        return (self.ours_end - self.ours_start) - (self.base_end - self.base_start)


@dataclass(frozen=True)
class Merged:
    """The merge of one file: `content` when clean, None when it has conflict regions."""

    content: str | None
    hunks: tuple[HunkResult, ...]
    ours: str
    base: str
    theirs: str
    labels: tuple[str, str, str]

    def marked(self) -> str:
        """The file with diff3 conflict markers, for a person to resolve. Made on demand:
        `--diff3` output lowers xdiff's merge level, so it never decides what merges."""
        with tempfile.TemporaryDirectory(prefix="patchkeeper-merge-") as tmp:
            folder = Path(tmp)
            _write(folder, self.ours, self.base, self.theirs)
            label_args = [arg for label in self.labels for arg in ("-L", label)]
            done = subprocess.run(
                [*_GIT, "merge-file", "-p", "-q", "--diff3", *label_args, "ours", "base", "theirs"],
                cwd=folder,
                capture_output=True,
                check=False,
            )
        return done.stdout.decode("utf-8", "surrogateescape")


def _write(folder: Path, ours: str, base: str, theirs: str) -> None:
    for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))


def _regions(diff: str) -> list[Region]:
    """The changed regions of a `-U0` diff, as 0-based half-open ranges."""
    regions = []
    for match in _RANGE.finditer(diff):
        old_len = int(match[2]) if match[2] is not None else 1
        new_len = int(match[4]) if match[4] is not None else 1
        old = int(match[1]) - (1 if old_len else 0)
        new = int(match[3]) - (1 if new_len else 0)
        regions.append(Region(old, old + old_len, new, new + new_len))
    return regions


def _run_git(tmp: Path, ours: str, base: str, theirs: str, label: str) -> tuple[str, int, str]:
    """(merged text, conflict count, base->ours -U0 diff), from two concurrent git processes."""
    _write(tmp, ours, base, theirs)
    merge = subprocess.Popen(
        [*_GIT, "merge-file", "-p", "-q", "ours", "base", "theirs"],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    align = subprocess.Popen(
        [
            *_GIT,
            "diff",
            "--no-index",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            "--diff-algorithm=myers",
            "-U0",
            "base",
            "ours",
        ],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    merged, merge_err = merge.communicate()
    aligned, align_err = align.communicate()
    if merge.returncode < 0 or merge.returncode > 127 or align.returncode not in (0, 1):
        detail = (merge_err or align_err).decode(errors="replace").strip()
        raise UnsafeInputError(f"{label}: git could not merge the file: {detail}")
    return (
        merged.decode("utf-8", "surrogateescape"),
        merge.returncode,
        aligned.decode("utf-8", "surrogateescape"),
    )


class Alignment:
    """The base->ours changed regions, indexed: lookups by bisection, not a scan per hunk
    (`server_args.py` has thousands of lines and hundreds of regions between releases)."""

    def __init__(self, regions: Sequence[Region]) -> None:
        self.regions = list(regions)  # sorted, disjoint
        self.ends = [r.base_end for r in self.regions]
        self.shift = [0]  # shift[i]: lines regions[:i] added to ours
        for region in self.regions:
            self.shift.append(self.shift[-1] + region.delta)

    def to_ours(self, index: int) -> int:
        """Where base line `index` sits in ours (a changed line: where its region starts)."""
        i = bisect.bisect_right(self.ends, index)  # regions[:i] end at or before `index`
        if i < len(self.regions) and self.regions[i].base_start <= index:
            return self.regions[i].ours_start
        return index + self.shift[i]

    def between(self, low: int, high: int) -> tuple[int, list[Region]]:
        """(index of the first, the regions) touching base lines [low, high], ends included."""
        i = bisect.bisect_left(self.ends, low)
        found = []
        for region in self.regions[i:]:
            if region.base_start > high:
                break
            found.append(region)
        return i, found


def _quote(lines: Sequence[str], index: int) -> str:
    return repr(lines[index].rstrip("\n")) if index < len(lines) else "end of file"


def classify(
    hunks: Sequence[Hunk],
    base: Sequence[str],
    ours: Sequence[str],
    regions: Sequence[Region],
    clean: bool,
) -> list[HunkResult]:
    """One result per hunk, from the base->ours alignment (see the module docstring)."""
    alignment = Alignment(regions)
    results = []
    for hunk in hunks:
        lead, trail = hunk.core()
        start, end = hunk.at, hunk.at + len(hunk.old)
        core_start, core_end = start + lead, end - trail
        new_core = list(hunk.new[lead : len(hunk.new) - trail])
        first_touching, touching = alignment.between(core_start, core_end)
        if not touching:
            drift = any(
                r.base_start < end and start < r.base_end
                if r.base_end > r.base_start
                else start < r.base_start < end
                for r in alignment.between(start, end)[1]
            )
            status = HunkStatus.DRIFTED if drift else HunkStatus.APPLIED
            line = alignment.to_ours(core_start if drift else start) + 1
            results.append(HunkResult(hunk, status, line))
            continue
        low = min(core_start, touching[0].base_start)
        high = max(core_end, touching[-1].base_end)
        ours_low = low + alignment.shift[first_touching]
        ours_high = ours_low + (high - low) + sum(r.delta for r in touching)
        wanted = list(base[low:core_start]) + new_core + list(base[core_end:high])
        if list(ours[ours_low:ours_high]) == wanted:
            results.append(HunkResult(hunk, HunkStatus.PRESENT, ours_low + (core_start - low) + 1))
        elif clean:
            results.append(HunkResult(hunk, HunkStatus.DRIFTED, alignment.to_ours(core_start) + 1))
        else:
            first = touching[0]
            theirs_line = _quote(base, core_start)
            ours_line = _quote(ours, first.ours_start)
            reason = (
                f"the image changed lines {first.ours_start + 1}-{touching[-1].ours_end} "
                f"({ours_line}) where the PR changes base lines {core_start + 1}-{core_end} "
                f"({theirs_line})"
            )
            results.append(HunkResult(hunk, HunkStatus.CONFLICT, ours_low + 1, reason))
    if not clean and all(r.status is not HunkStatus.CONFLICT for r in results):
        results = [
            r
            if r.status is HunkStatus.PRESENT
            else HunkResult(
                r.hunk, HunkStatus.CONFLICT, r.line, "git merge-file reports a conflict"
            )
            for r in results
        ]
    return results


def _unchanged(hunks: Sequence[Hunk], status: HunkStatus, shifted: bool) -> list[HunkResult]:
    """Results when ours is the base (everything applies in place) or the result (present)."""
    results, shift = [], 0
    for hunk in hunks:
        results.append(HunkResult(hunk, status, hunk.at + (shift if shifted else 0) + 1))
        shift += len(hunk.new) - len(hunk.old)
    return results


def merge(
    ours: str, base: str, theirs: str, hunks: Sequence[Hunk], labels: tuple[str, str, str]
) -> Merged:
    """Merge one file; `labels` name ours, base and theirs in conflict markers and errors."""
    if ours == base:
        results = _unchanged(hunks, HunkStatus.APPLIED, False)
        return Merged(theirs, tuple(results), ours, base, theirs, labels)
    if ours == theirs:
        results = _unchanged(hunks, HunkStatus.PRESENT, True)
        return Merged(ours, tuple(results), ours, base, theirs, labels)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-merge-") as tmp:
        merged, conflicts, aligned = _run_git(Path(tmp), ours, base, theirs, labels[0])
    results = classify(
        hunks, split_lines(base), split_lines(ours), _regions(aligned), not conflicts
    )
    return Merged(None if conflicts else merged, tuple(results), ours, base, theirs, labels)
