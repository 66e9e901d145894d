"""PRs x nightlies: the first nightly that contains each patch ("can I drop it yet?")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patchkeeper.image.tags import NightlyTag
from patchkeeper.upstream.model import UpstreamChange, UpstreamResolver


@dataclass(frozen=True)
class Row:
    change: UpstreamChange
    contained: tuple[bool | None, ...]  # per tag, oldest first; None: tag commit unknown

    @property
    def label(self) -> str:
        return f"#{self.change.patch.pr}" if self.change.patch.pr else self.change.patch.key

    def first(self, tags: Sequence[NightlyTag]) -> str | None:
        """The first nightly with it: a tag when the window shows it arrive (the tag before
        lacks it), "at or before <tag>" when it was in from the window's start (or after
        tags whose commit is unknown)."""
        for index, inside in enumerate(self.contained):
            if inside:
                exact = index > 0 and self.contained[index - 1] is False
                return tags[index].tag if exact else f"at or before {tags[index].tag}"
        return None


@dataclass(frozen=True)
class Timeline:
    tags: tuple[NightlyTag, ...]
    commits: tuple[str | None, ...]
    rows: tuple[Row, ...]

    def __add__(self, other: Timeline) -> Timeline:
        """Another patchset's rows over the same tags (commits stay this one's)."""
        return Timeline(self.tags, self.commits, self.rows + other.rows)


def build(
    resolver: UpstreamResolver,
    changes: Sequence[UpstreamChange],
    tags: Sequence[NightlyTag],
    commits: Sequence[str | None],
) -> Timeline:
    """One containment pass for every (PR, tag) pair; unmerged PRs are in no nightly, and a
    reverted one only in nightlies with its landing and without the revert."""
    known = [c for c in commits if c]
    marks = [m for c in changes for m in (c.merge_commit, c.reverted_by) if m]
    inside = resolver.contained(marks, known) if known and marks else {}
    rows = []
    for change in changes:
        cells: list[bool | None] = []
        for commit in commits:
            if commit is None:
                cells.append(None)
            else:
                found = inside.get(commit, frozenset())
                landed = bool(change.merge_commit) and change.merge_commit in found
                cells.append(landed and change.reverted_by not in found)
        rows.append(Row(change, tuple(cells)))
    return Timeline(tuple(tags), tuple(commits), tuple(rows))


def markdown(timeline: Timeline) -> str:
    head = "| patch | state | first nightly with it | " + " | ".join(t.date for t in timeline.tags)
    rule = "|---|---|---|" + "---|" * len(timeline.tags)
    mark = {True: "yes", False: "·", None: "?"}
    lines = [head + " |", rule]
    for row in timeline.rows:
        cells = " | ".join(mark[c] for c in row.contained)
        first = row.first(timeline.tags) or "none yet"
        lines.append(f"| {row.label} | {row.change.state} | {first} | {cells} |")
    return "\n".join(lines) + "\n"
