"""Pick the newest nightly among an image repository's tags."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from patchkeeper.errors import ImageError


@dataclass(frozen=True, order=True)
class NightlyTag:
    date: str
    tag: str
    sha: str


def nightly_tags(tags: Iterable[str], pattern: re.Pattern[str]) -> list[NightlyTag]:
    """Tags matching the recipe's regex, oldest first (by the `date` group, then name)."""
    found = []
    for tag in tags:
        match = pattern.fullmatch(tag)
        if match:
            found.append(NightlyTag(match["date"], tag, match["sha"]))
    return sorted(found)


def newest_tag(
    tags: Iterable[str],
    pattern: re.Pattern[str],
    repository: str,
    created: Callable[[str], str | None],
) -> NightlyTag:
    """The newest by `date`; two builds on one day are told apart by `created(tag)`."""
    found = nightly_tags(tags, pattern)
    if not found:
        raise ImageError(f"no tag of {repository} matches {pattern.pattern!r}")
    latest = [t for t in found if t.date == found[-1].date]
    if len(latest) == 1:
        return latest[0]
    return max(latest, key=lambda t: (created(t.tag) or "", t.tag))


def newer_than(tags: Iterable[str], pattern: re.Pattern[str], used: str) -> NightlyTag | None:
    """The newest matching tag dated after `used` (a matching tag), if there is one."""
    found = nightly_tags(tags, pattern)
    current = nightly_tags([used], pattern)
    if not found or not current or found[-1].date <= current[0].date:
        return None
    return found[-1]
