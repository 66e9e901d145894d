"""Port whole changes onto the image's files, in declared order.

Every file a change touches is ported or explicitly accounted for: a fix
whose second file is silently skipped looks fixed and is not.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.diff import FileChange, FilePatch, parse_diff
from patchkeeper.patching.hunks import HunkResult, HunkStatus, apply_hunks
from patchkeeper.upstream.model import UpstreamChange


class PatchState(StrEnum):
    UPSTREAM = "upstream"  # already in the image: by ancestry or every hunk present
    APPLIED = "applied"  # every hunk applied by the overlay
    PARTIAL = "partial"  # the image had some hunks; the overlay adds the rest
    CONFLICT = "conflict"  # at least one hunk or file cannot be ported


class FileAction(StrEnum):
    PATCHED = "patched"
    CREATED = "created"
    UNCHANGED = "unchanged"  # every hunk already present
    EXCLUDED = "excluded"  # matched the patch's `exclude:` globs
    LEFT_IN_PLACE = "left-in-place"  # deleted/renamed upstream; a bind mount cannot delete
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ParsedChange:
    """A change's diff, parsed, with the in-image directory its paths are relative to."""

    change: UpstreamChange
    root: PurePosixPath
    files: tuple[FilePatch, ...]

    @classmethod
    def of(cls, change: UpstreamChange, root: PurePosixPath) -> ParsedChange:
        return cls(change, root, parse_diff(change.diff, f"{change.patchset}/{change.label}"))

    def paths_to_read(self) -> set[PurePosixPath]:
        """In-image paths whose vanilla content porting this change needs."""
        paths = set()
        for file in self.files:
            paths.add(self.root / file.path)
            if file.old_path:
                paths.add(self.root / file.old_path)
        return paths


@dataclass(frozen=True)
class FileOutcome:
    path: PurePosixPath
    kind: FileChange
    action: FileAction
    hunks: tuple[HunkResult, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class PatchOutcome:
    change: UpstreamChange
    state: PatchState
    files: tuple[FileOutcome, ...] = ()
    via: str = ""  # why UPSTREAM: "ancestry" or "content"

    def count(self, status: HunkStatus) -> int:
        return sum(1 for f in self.files for h in f.hunks if h.status is status)


@dataclass
class PortResult:
    vanilla: Mapping[PurePosixPath, bytes | None]
    current: dict[PurePosixPath, bytes | None]
    outcomes: list[PatchOutcome] = field(default_factory=list)

    @property
    def conflicts(self) -> list[PatchOutcome]:
        return [o for o in self.outcomes if o.state is PatchState.CONFLICT]

    def changed_files(self) -> dict[PurePosixPath, bytes]:
        """Files whose final content differs from the image's."""
        return {
            path: data
            for path, data in sorted(self.current.items())
            if data is not None and data != self.vanilla.get(path)
        }


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _lines(data: bytes, where: str) -> list[str]:
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise UnsafeInputError(f"{where}: the image's file is not UTF-8 text") from None


def _port_file(
    file: FilePatch, root: PurePosixPath, current: dict[PurePosixPath, bytes | None]
) -> FileOutcome:
    """Port one file of a change; on success `current` holds its new content."""
    path = root / file.path
    target = current.get(path)
    source = current.get(root / file.old_path) if file.old_path else None
    if file.kind is FileChange.DELETED:
        note = "deleted upstream; a read-only mount cannot delete it" if source else ""
        action = FileAction.LEFT_IN_PLACE if source is not None else FileAction.UNCHANGED
        return FileOutcome(path, file.kind, action, note=note)
    if file.kind is FileChange.ADDED:
        return _port_added(file, path, target, current)
    base = target if target is not None else source  # a rename ports the old file's content
    if base is None:
        return FileOutcome(path, file.kind, FileAction.CONFLICT, note="absent from the image")
    lines, results = apply_hunks(_lines(base, str(path)), file.hunks)
    if any(r.status is HunkStatus.CONFLICT for r in results):
        return FileOutcome(path, file.kind, FileAction.CONFLICT, tuple(results))
    new = "".join(lines).encode()
    current[path] = new
    note = ""
    if file.kind is FileChange.RENAMED and source is not None and target is None:
        note = f"renamed from {file.old_path}; the old file stays in the image"
    if new == base and target is not None:
        action = FileAction.UNCHANGED
    else:
        action = FileAction.CREATED if target is None else FileAction.PATCHED
    return FileOutcome(path, file.kind, action, tuple(results), note)


def _port_added(
    file: FilePatch,
    path: PurePosixPath,
    target: bytes | None,
    current: dict[PurePosixPath, bytes | None],
) -> FileOutcome:
    """A file the change adds: create it, or find it already there, byte for byte."""
    content = "".join(line for hunk in file.hunks for line in hunk.new).encode()
    if target is None:
        current[path] = content
        results = tuple(HunkResult(h, HunkStatus.APPLIED) for h in file.hunks)
        return FileOutcome(path, file.kind, FileAction.CREATED, results)
    if target == content:
        results = tuple(HunkResult(h, HunkStatus.PRESENT, 1) for h in file.hunks)
        return FileOutcome(path, file.kind, FileAction.UNCHANGED, results)
    results = tuple(
        HunkResult(h, HunkStatus.CONFLICT, reason="the image has another file here")
        for h in file.hunks
    )
    return FileOutcome(path, file.kind, FileAction.CONFLICT, results, "added upstream, differs")


def _state(files: Sequence[FileOutcome]) -> tuple[PatchState, str]:
    statuses = [h.status for f in files for h in f.hunks]
    if any(f.action is FileAction.CONFLICT for f in files):
        return PatchState.CONFLICT, ""
    applied = HunkStatus.APPLIED in statuses or any(f.action is FileAction.CREATED for f in files)
    if not applied:
        return PatchState.UPSTREAM, "content"
    return (PatchState.PARTIAL if HunkStatus.PRESENT in statuses else PatchState.APPLIED), ""


def port(
    changes: Sequence[ParsedChange],
    vanilla: Mapping[PurePosixPath, bytes | None],
    upstream: set[str] | frozenset[str] = frozenset(),
) -> PortResult:
    """Apply `changes` in order; `upstream` holds ids of changes already in the image.

    `vanilla` maps in-image paths to the image's bytes (None: absent).
    """
    result = PortResult(vanilla, dict(vanilla))
    for parsed in changes:
        change = parsed.change
        if change.id in upstream:
            result.outcomes.append(PatchOutcome(change, PatchState.UPSTREAM, via="ancestry"))
            continue
        files = []
        for file in parsed.files:
            if any(fnmatch.fnmatch(str(file.path), g) for g in change.patch.exclude):
                files.append(FileOutcome(parsed.root / file.path, file.kind, FileAction.EXCLUDED))
            else:
                files.append(_port_file(file, parsed.root, result.current))
        state, via = _state(files)
        result.outcomes.append(PatchOutcome(change, state, tuple(files), via))
    return result
