"""Port whole changes onto the image's files, in declared order, one change at a time.

A PR's files are merged three-way (see `merge`): base is the file at the PR's
base commit, theirs is that file with the PR's diff replayed exactly, ours is
the image's file after the earlier changes. A local diff's file merges the same
way against the upstream blob its `index` line names, where upstream has that
blob (the diff was made from upstream code); any other file of a local diff is
matched exactly (see `hunks`). Every file a change touches is
ported or explicitly accounted for (a fix whose second file is silently skipped
looks fixed and is not), and a change that does not port leaves no trace: the
next change starts from the files as they were before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import PurePosixPath

import pathspec

from patchkeeper.errors import UnsafeInputError, UpstreamError
from patchkeeper.patching.diff import FileChange, FilePatch, parse_diff
from patchkeeper.patching.hunks import (
    HunkResult,
    HunkStatus,
    ReplayError,
    apply_exact,
    replay,
    split_lines,
)
from patchkeeper.patching.merge import Merged, merge
from patchkeeper.patching.resolutions import Resolution, matching
from patchkeeper.upstream.model import PrState, UpstreamChange, is_blob


class PatchState(StrEnum):
    UPSTREAM = "upstream"  # already in the image: by ancestry or every hunk present
    APPLIED = "applied"  # every hunk applied by the overlay
    PARTIAL = "partial"  # the image had some hunks; the overlay adds the rest
    CONFLICT = "conflict"  # at least one hunk or file cannot be ported


class FileAction(StrEnum):
    PATCHED = "patched"
    CREATED = "created"
    UNCHANGED = "unchanged"  # every hunk already present
    EXCLUDED = "excluded"  # matched the patch's `exclude:` patterns
    LEFT_IN_PLACE = "left-in-place"  # deleted/renamed upstream; a bind mount cannot delete
    CONFLICT = "conflict"


def excluded(patterns: Sequence[str], *paths: PurePosixPath | None) -> bool:
    """`exclude:` patterns are .gitignore patterns, matched on repository paths: `*` stays
    within one path segment, `**` crosses directories, a pattern without a `/` (other than a
    trailing one) matches a name at any depth, and a pattern that matches a directory covers
    everything below it. A file is excluded when its path before or after the change does."""
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    return any(path is not None and spec.match_file(str(path)) for path in paths)


@dataclass(frozen=True)
class ParsedChange:
    """A change's diff, parsed, with the in-image directory its paths are relative to.

    `bases` holds, by repository path, the files a three-way merge takes as its base: a
    PR's files at its base commit (None: absent there), a local diff's upstream blobs (those
    its `index` lines name that upstream has). A file without one is matched exactly.
    """

    change: UpstreamChange
    root: PurePosixPath
    files: tuple[FilePatch, ...]
    bases: Mapping[PurePosixPath, bytes | None] = field(default_factory=dict)
    resolutions: tuple[Resolution, ...] = ()  # recorded by hand for its conflicting files

    @classmethod
    def of(cls, change: UpstreamChange, root: PurePosixPath) -> ParsedChange:
        return cls(change, root, parse_diff(change.diff, f"{change.patchset}/{change.label}"))

    @property
    def label(self) -> str:
        return f"{self.change.patchset}/{self.change.label}"

    def paths_to_read(self) -> set[PurePosixPath]:
        """In-image paths whose vanilla content porting this change needs."""
        paths = set()
        for file in self.files:
            paths.add(self.root / file.path)
            if file.old_path:
                paths.add(self.root / file.old_path)
        return paths

    def base_paths(self) -> list[PurePosixPath]:
        """Repository paths whose content at the base commit a three-way merge needs."""
        return sorted(
            {
                file.old_path
                for file in self.files
                if file.old_path and file.kind in (FileChange.MODIFIED, FileChange.RENAMED)
            }
        )

    def named_bases(self) -> list[tuple[PurePosixPath, str]]:
        """(repository path, blob id) of each file a local diff's `index` lines name a base
        blob for, that porting may merge against (none for a PR: its base is a commit)."""
        if self.change.state is not PrState.LOCAL:
            return []
        return sorted(
            {
                (file.old_path, file.blobs[0])
                for file in self.files
                if file.old_path
                and file.blobs
                and file.blobs[0].strip("0")
                and file.kind in (FileChange.MODIFIED, FileChange.RENAMED)
                and not excluded(self.change.patch.exclude, file.path, file.old_path)
            }
        )

    def with_bases(self, bases: Mapping[PurePosixPath, bytes | None]) -> ParsedChange:
        return replace(self, bases=dict(bases))

    def with_resolutions(self, resolutions: Sequence[Resolution]) -> ParsedChange:
        return replace(self, resolutions=tuple(resolutions))


@dataclass(frozen=True)
class FileOutcome:
    path: PurePosixPath
    kind: FileChange
    action: FileAction
    hunks: tuple[HunkResult, ...] = ()
    note: str = ""
    ours: bytes | None = None  # for a conflicting file: the file as the patch found it
    three_way: Merged | None = None  # for a file the three-way merge refused

    @property
    def marked(self) -> str:
        """The diff3-marked file ("" for a file matched exactly: no base to mark against)."""
        return self.three_way.marked() if self.three_way else ""


@dataclass(frozen=True)
class PatchOutcome:
    change: UpstreamChange
    state: PatchState
    files: tuple[FileOutcome, ...] = ()
    via: str = ""  # why UPSTREAM: "ancestry" or "content"

    def count(self, *statuses: HunkStatus) -> int:
        return sum(1 for f in self.files for h in f.hunks if h.status in statuses)


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


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeInputError(f"{where}: the file is not UTF-8 text") from None


def _base_name(parsed: ParsedChange, file: FilePatch, short: bool = True) -> str:
    """What a file merges against: a PR's base commit, a local diff's upstream blob."""
    if parsed.change.state is PrState.LOCAL:
        assert file.blobs is not None
        return f"upstream blob {file.blobs[0][:12]}"
    base = parsed.change.base or ""
    return f"base {base[:12] if short else base}"


def _theirs(parsed: ParsedChange, file: FilePatch) -> tuple[str, str]:
    """(base, theirs) texts: the base file, verified, and the diff replayed onto it. A local
    diff whose hunks do not replay onto its base raises ReplayError (it is matched exactly);
    its hunks, not its result id, say what it changes (a diff edited by hand still ports)."""
    assert file.old_path is not None
    local = parsed.change.state is PrState.LOCAL
    base = parsed.bases[file.old_path]
    where = f"{parsed.label}: {file.old_path} at {_base_name(parsed, file)}"
    if base is None:
        raise UpstreamError(f"{where}: the file the diff changes is absent at its base")
    if file.blobs and not is_blob(base, file.blobs[0]):
        raise UpstreamError(f"{where}: not the blob {file.blobs[0]} the diff names")
    base_text = _text(base, where)
    try:
        theirs = "".join(replay(split_lines(base_text), file.hunks))
    except ReplayError as err:
        if local:
            raise
        raise UpstreamError(f"{where}: {err}") from None
    if file.blobs and not local and not is_blob(theirs.encode(), file.blobs[1]):
        raise UpstreamError(f"{where}: the replayed diff is not the blob {file.blobs[1]}")
    return base_text, theirs


def _merge_inputs(parsed: ParsedChange, file: FilePatch) -> tuple[tuple[str, str] | None, str]:
    """((base, theirs) to merge, or None: match exactly; for a local diff's file whose
    `index` line names a base blob, the note that says which way it ports)."""
    local = parsed.change.state is PrState.LOCAL
    if file.old_path not in parsed.bases:
        if not local or not file.blobs or not file.blobs[0].strip("0"):
            return None, ""
        return None, f"matched exactly: no upstream blob {file.blobs[0][:12]} to merge against"
    name = _base_name(parsed, file)
    try:
        inputs = _theirs(parsed, file)
    except ReplayError:
        return None, f"matched exactly: its hunks do not replay onto {name}"
    return inputs, f"three-way against {name}" if local else ""


def _port_file(
    parsed: ParsedChange, file: FilePatch, current: dict[PurePosixPath, bytes | None]
) -> FileOutcome:
    """Port one file of a change; on success `current` holds its new content."""
    root = parsed.root
    path = root / file.path
    target = current.get(path)
    source = current.get(root / file.old_path) if file.old_path else None
    if file.kind is FileChange.DELETED:
        return _port_deleted(file, path, source)
    if file.kind is FileChange.ADDED:
        return _port_added(file, path, target, current)
    ours = target if target is not None else source  # a rename ports the old file's content
    if ours is None:
        return FileOutcome(path, file.kind, FileAction.CONFLICT, note="absent from the image")
    content, results, three_way, notes = _changed(
        parsed, file, path, _text(ours, f"image path {path}")
    )
    if content is None:
        note = "; ".join(notes)
        return FileOutcome(path, file.kind, FileAction.CONFLICT, results, note, ours, three_way)
    new = content.encode()
    current[path] = new
    if file.kind is FileChange.RENAMED and source is not None and target is None:
        notes.append(f"renamed from {file.old_path}; the old file stays in the image")
    if new == ours and target is not None:
        action = FileAction.UNCHANGED
    else:
        action = FileAction.CREATED if target is None else FileAction.PATCHED
    return FileOutcome(path, file.kind, action, results, "; ".join(notes))


def _port_deleted(file: FilePatch, path: PurePosixPath, source: bytes | None) -> FileOutcome:
    """A file the change deletes: gone already, or left in place (a mount cannot delete)."""
    if source is None:
        results = tuple(HunkResult(h, HunkStatus.PRESENT) for h in file.hunks)
        return FileOutcome(path, file.kind, FileAction.UNCHANGED, results)
    note = "deleted upstream; a read-only mount cannot delete it"
    return FileOutcome(path, file.kind, FileAction.LEFT_IN_PLACE, note=note)


def _changed(
    parsed: ParsedChange, file: FilePatch, path: PurePosixPath, ours: str
) -> tuple[str | None, tuple[HunkResult, ...], Merged | None, list[str]]:
    """The file's new text (None: a conflict) by a three-way merge or exact matching, else
    a recorded resolution; its hunks' results; the merge that refused; the notes."""
    three_way = None
    inputs, way = _merge_inputs(parsed, file)
    if inputs is not None:
        base, theirs = inputs
        labels = (f"image {path}", _base_name(parsed, file, short=False), parsed.label)
        merged = merge(ours, base, theirs, file.hunks, labels)
        content, results = merged.content, merged.hunks
        three_way = merged if content is None else None
    else:
        lines, exact = apply_exact(split_lines(ours), file.hunks)
        results = tuple(exact)
        failed = any(r.status is HunkStatus.CONFLICT for r in results)
        content = None if failed else "".join(lines)
    notes = [way] if way else []
    if content is not None:
        return content, results, None, notes
    content, reused = _reuse(parsed, path, ours)
    notes += [reused] if reused else []
    if content is None:
        return None, results, three_way, notes
    placed = tuple(
        HunkResult(r.hunk, HunkStatus.DRIFTED, r.line, "placed by a recorded resolution")
        if r.status is HunkStatus.CONFLICT
        else r
        for r in results
    )
    return content, placed, None, notes


def _reuse(parsed: ParsedChange, path: PurePosixPath, ours: str) -> tuple[str | None, str]:
    """(content, note) from a recorded resolution for this file and diff: as it is when the
    file is the one it was recorded against, else merged three-way onto the changed file when
    that merges cleanly. No content: why a recorded resolution did not serve ("" if none)."""
    candidates = matching(parsed.resolutions, path, parsed.change.diff_sha256)
    where = f"resolution of {path}"
    for resolution in candidates:
        if resolution.ours == ours.encode():
            return _text(resolution.resolved, where), "resolved by a recorded resolution"
    for resolution in candidates:
        labels = (f"image {path}", "the file the resolution was recorded against", "resolution")
        recorded = _text(resolution.ours, where)
        merged = merge(ours, recorded, _text(resolution.resolved, where), (), labels)
        if merged.content is not None:
            return (
                merged.content,
                "resolved by a recorded resolution, merged onto a changed image file",
            )
    if candidates:
        return None, "the recorded resolution does not merge onto the changed image file"
    if any(r.path == path for r in parsed.resolutions):
        return None, "a resolution was recorded for another version of this diff: resolve again"
    return None, ""


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
        results = tuple(HunkResult(h, HunkStatus.APPLIED, 1) for h in file.hunks)
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
    ported = {HunkStatus.APPLIED, HunkStatus.DRIFTED}
    applied = ported & set(statuses) or any(f.action is FileAction.CREATED for f in files)
    if not applied:
        return PatchState.UPSTREAM, "content"
    return (PatchState.PARTIAL if HunkStatus.PRESENT in statuses else PatchState.APPLIED), ""


def _refuse_unportable(parsed: ParsedChange, files: Sequence[FileOutcome]) -> None:
    """Changes an overlay cannot carry are bad input (exit 2), never a silent no-op."""
    for file in parsed.files:
        if file.unsupported and not excluded(parsed.change.patch.exclude, file.path, file.old_path):
            raise UnsafeInputError(
                f"{parsed.label}: {file.path}: {file.unsupported} cannot be carried by a "
                "text overlay; add it to the patch's exclude: to port the rest"
            )
    left = [f for f in files if f.action is FileAction.LEFT_IN_PLACE]
    if left and all(f.action in (FileAction.LEFT_IN_PLACE, FileAction.EXCLUDED) for f in files):
        names = ", ".join(str(f.path) for f in left)
        raise UnsafeInputError(
            f"{parsed.label}: only deletes {names}, still in the image; a read-only overlay "
            "cannot delete files: drop the patch or exclude the files"
        )


def _created(
    changes: Sequence[ParsedChange], vanilla: Mapping[PurePosixPath, bytes | None]
) -> Iterator[tuple[ParsedChange, FilePatch, list[PurePosixPath]]]:
    """Each file the overlay would create (added or renamed to, absent from the image),
    with the directories below its change's root it sits in, outermost first."""
    for parsed in changes:
        for file in parsed.files:
            path = parsed.root / file.path
            if (
                file.kind in (FileChange.ADDED, FileChange.RENAMED)
                and vanilla.get(path) is None
                and not excluded(parsed.change.patch.exclude, file.path, file.old_path)
            ):
                below = [parsed.root / p for p in reversed(file.path.parents) if p.parts]
                yield parsed, file, below


def mount_dirs(
    changes: Sequence[ParsedChange], vanilla: Mapping[PurePosixPath, bytes | None]
) -> set[PurePosixPath]:
    """The in-image directories `refuse_unmountable` needs the kinds of."""
    return {d for _, _, dirs in _created(changes, vanilla) for d in dirs}


def refuse_unmountable(
    changes: Sequence[ParsedChange],
    vanilla: Mapping[PurePosixPath, bytes | None],
    kinds: Mapping[PurePosixPath, str],
) -> None:
    """A created file is mounted at its path, so every directory it sits in below the
    root must be a real directory of the image, or not exist yet (the mount makes it):
    below a symlink the mount would land wherever the link points, outside the root;
    below a regular file it fails at container start ("not a directory")."""
    for parsed, file, dirs in _created(changes, vanilla):
        for directory in dirs:
            kind = kinds[directory]
            if kind == "symlink":
                raise UnsafeInputError(
                    f"{parsed.label}: {file.path}: {directory} is a symlink in the image; the "
                    f"overlay would mount the new file wherever it points, outside {parsed.root}"
                )
            if kind not in ("dir", "absent"):
                what = "regular file" if kind == "file" else "device file or FIFO"
                raise UnsafeInputError(
                    f"{parsed.label}: {file.path}: {directory} is a {what} in the image, not a "
                    "directory; the overlay's mount would fail at container start"
                )
            if kind == "absent":
                break  # the mount creates it and everything below it


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
        staged = dict(result.current)
        files = []
        for file in parsed.files:
            if excluded(change.patch.exclude, file.path, file.old_path):
                files.append(FileOutcome(parsed.root / file.path, file.kind, FileAction.EXCLUDED))
            elif not file.unsupported:
                files.append(_port_file(parsed, file, staged))
        _refuse_unportable(parsed, files)
        state, via = _state(files)
        if state is not PatchState.CONFLICT:
            result.current = staged
        result.outcomes.append(PatchOutcome(change, state, tuple(files), via))
    return result
