"""Parse an untrusted unified diff into hunks, refusing anything unsafe.

Paths must stay inside the repository (no absolute paths, no `..`, nothing
under `.git`); symlinks, submodules and binary patches are refused, because a
read-only text overlay cannot represent them faithfully.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from unidiff.constants import DEV_NULL, LINE_TYPE_NO_NEWLINE
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from patchkeeper.errors import UnsafeInputError


class FileChange(StrEnum):
    MODIFIED = "modified"
    ADDED = "added"
    DELETED = "deleted"
    RENAMED = "renamed"


@dataclass(frozen=True)
class Hunk:
    """One hunk: the lines it expects (`old`) and the lines it leaves (`new`)."""

    header: str
    old_start: int
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True)
class FilePatch:
    path: PurePosixPath  # repository-relative, after the change
    old_path: PurePosixPath | None  # before the change; None for an added file
    kind: FileChange
    hunks: tuple[Hunk, ...]


def safe_repo_path(raw: str, label: str) -> PurePosixPath:
    """A repository-relative path, or UnsafeInputError naming the offender."""
    name = raw[2:] if raw[:2] in ("a/", "b/") else raw
    path = PurePosixPath(name)
    bad = (
        not name
        or path.is_absolute()
        or any(part in ("..", ".git", "") for part in path.parts)
        or any(ord(ch) < 32 or ch == "\\" for ch in name)
    )
    if bad:
        raise UnsafeInputError(f"{label}: refusing unsafe path {raw!r} in diff")
    return path


def _hunk(raw_hunk: object) -> Hunk:
    old: list[str] = []
    new: list[str] = []
    previous: list[list[str]] = []
    for line in raw_hunk:  # type: ignore[attr-defined]
        if line.line_type == LINE_TYPE_NO_NEWLINE:
            for side in previous:
                side[-1] = side[-1].removesuffix("\n")
            continue
        previous = []
        if not line.is_added:
            old.append(line.value)
            previous.append(old)
        if not line.is_removed:
            new.append(line.value)
            previous.append(new)
    header = f"@@ -{raw_hunk.source_start},{raw_hunk.source_length} "  # type: ignore[attr-defined]
    header += f"+{raw_hunk.target_start},{raw_hunk.target_length} @@"  # type: ignore[attr-defined]
    return Hunk(header, raw_hunk.source_start, tuple(old), tuple(new))  # type: ignore[attr-defined]


def parse_diff(text: str, label: str) -> tuple[FilePatch, ...]:
    """Parse `text` (a PR's diff or a local diff file); `label` names it in errors."""
    try:
        patch_set = PatchSet(text)
    except UnidiffParseError as err:
        raise UnsafeInputError(f"{label}: malformed diff: {err}") from None
    if not patch_set and text.strip():
        raise UnsafeInputError(f"{label}: no file changes found in the diff")
    files = []
    for patched in patch_set:
        where = f"{label}: {patched.path}"
        if patched.is_binary_file:
            raise UnsafeInputError(f"{where}: binary diffs are not supported")
        if patched.is_symlink or patched.is_submodule:
            raise UnsafeInputError(f"{where}: refusing a symlink or submodule change")
        old, new = (
            None if name == DEV_NULL else safe_repo_path(name, label)
            for name in (patched.source_file, patched.target_file)
        )
        if patched.is_added_file:
            kind = FileChange.ADDED
        elif patched.is_removed_file:
            kind = FileChange.DELETED
        elif patched.is_rename:
            kind = FileChange.RENAMED
        else:
            kind = FileChange.MODIFIED
        path = new or old
        assert path is not None
        files.append(FilePatch(path, old, kind, tuple(_hunk(h) for h in patched)))
    return tuple(files)
