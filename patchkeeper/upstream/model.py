"""Value objects and the resolver interface that git and GitHub sources share."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Protocol

from patchkeeper.config.models import Patch


class PrState(StrEnum):
    MERGED = "merged"
    OPEN = "open"
    CLOSED = "closed"  # closed without merge (or, from git alone, not mergeable)
    REVERTED = "reverted"  # landed, then a later commit on the branch reverted it
    LOCAL = "local"  # a local diff file, not an upstream PR


def is_blob(data: bytes, object_id: str) -> bool:
    """Whether `data` is the git blob `object_id` (SHA-1 or SHA-256, possibly abbreviated):
    what `git hash-object` computes, the hash of `blob <size>\\0` and the bytes."""
    algorithm = hashlib.sha256 if len(object_id) == 64 else hashlib.sha1
    digest = algorithm(b"blob %d\0" % len(data) + data).hexdigest()
    return digest.startswith(object_id)


@dataclass(frozen=True)
class UpstreamBlob:
    """A blob a local diff's `index` line names for one file, as upstream knows it."""

    content: bytes | None  # its bytes, checked against its id; None: none upstream can serve
    problem: str = ""  # why a blob upstream has cannot serve (an ambiguous id, a bad copy)


@dataclass(frozen=True)
class UpstreamChange:
    """What one patch means upstream: its state and the exact diff to port."""

    patchset: str
    patch: Patch
    state: PrState
    diff: str
    head: str | None = None
    merge_commit: str | None = None
    base: str | None = None
    title: str | None = None
    merged_at: str | None = None  # ISO 8601 UTC, from GitHub
    changed_files: tuple[str, ...] = ()  # repository paths, from GitHub
    reverted_by: str | None = None  # the branch commit that reverted merge_commit
    landed_as: str | None = None  # squash, merge commit, fast-forward, rebase, GitHub

    def notes(self) -> list[str]:
        """What the user must know about this PR's state, whatever the image holds."""
        if self.state is PrState.CLOSED:
            check = (
                f"its witness `{self.patch.witness}`"
                if self.patch.witness
                else "a `witness:` check (add one)"
            )
            return [
                f"{self.label} was closed without being merged: porting its head "
                f"{(self.head or '')[:12]}; its fix may have reached the branch another "
                f"way: when {check} passes on the vanilla image, retire it with "
                "`patchkeeper prune --witness-report <verify --json report>`"
            ]
        return []

    @property
    def diff_sha256(self) -> str:
        return hashlib.sha256(self.diff.encode()).hexdigest()

    @property
    def id(self) -> str:
        """Unique across a recipe's patchsets."""
        return f"{self.patchset}/{self.patch.key}"

    @property
    def label(self) -> str:
        return f"PR #{self.patch.pr}" if self.patch.pr else f"diff {self.patch.key}"


class UpstreamResolver(Protocol):
    """Turns patch entries into changes and answers ancestry questions.

    The git implementation works offline against any remote; a GitHub
    implementation can enrich titles and states on top of it.
    """

    def prepare(self, patches: Sequence[Patch]) -> None:
        """Fetch whatever the following calls need, in as few round trips as possible."""

    def resolve(self, patchset: str, patch: Patch) -> UpstreamChange: ...

    def has_commit(self, sha: str) -> bool: ...

    def contained(self, commits: Sequence[str], tips: Sequence[str]) -> dict[str, frozenset[str]]:
        """For each tip, which of `commits` are its ancestors (or itself)."""
        ...

    def files_at(
        self, commit: str, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes | None]:
        """The content of repository `paths` at `commit` (None: no such file there), in one
        batch; a three-way merge needs each changed file at the change's base."""
        ...

    def blobs(
        self, named: Sequence[tuple[PurePosixPath, str]]
    ) -> dict[tuple[PurePosixPath, str], UpstreamBlob]:
        """For each (repository path, blob id, full or abbreviated) a local diff names, that
        blob as upstream's history of the path has it, in one batch."""
        ...

    def changed_by(self, change: UpstreamChange, until: str) -> str | None:
        """The branch commit after `change` landed, up to `until`, that changed its lines."""
        ...
