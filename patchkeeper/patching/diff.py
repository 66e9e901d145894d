"""Parse an untrusted unified diff into hunks, refusing anything unsafe or garbled.

Paths must stay inside the repository (no absolute paths, no `..`, nothing
under `.git`). Binary, symlink and submodule entries are kept as *unsupported*
(a read-only text overlay cannot represent them), so that `exclude:` can cover
them and porting refuses only those it does not. Hunk headers are checked
against their bodies: a count that lies, or a garbled `@@` line, would
otherwise lose lines silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

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

    @property
    def at(self) -> int:
        """0-based index in the old file where `old` begins (`-N,0` inserts after line N)."""
        return self.old_start if not self.old else self.old_start - 1

    def core(self) -> tuple[int, int]:
        """(leading, trailing) context lines: what `old` and `new` share at either end."""
        short = min(len(self.old), len(self.new))
        lead = 0
        while lead < short and self.old[lead] == self.new[lead]:
            lead += 1
        trail = 0
        while trail < short - lead and self.old[-1 - trail] == self.new[-1 - trail]:
            trail += 1
        return lead, trail


@dataclass(frozen=True)
class FilePatch:
    path: PurePosixPath  # repository-relative, after the change
    old_path: PurePosixPath | None  # before the change; None for an added file
    kind: FileChange
    hunks: tuple[Hunk, ...]
    unsupported: str = ""  # why a text overlay cannot carry it (binary, symlink, submodule)
    blobs: tuple[str, str] | None = None  # git object ids before and after (`index` line)


_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# Object ids: SHA-1 (full, or abbreviated to git's minimum of 4) or full SHA-256.
_OBJECT_ID = r"([0-9a-f]{4,40}|[0-9a-f]{64})"
_INDEX = re.compile(rf"index {_OBJECT_ID}\.\.{_OBJECT_ID}(?: [0-7]{{6}})?\s*")
_OCTAL = re.compile(rb"\\([0-7]{3})")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\t": "\t", "\\n": "\n"}


def _unquote(raw: str) -> str:
    """Undo git's C-style quoting of a path (`"a/\\303\\251.py"`): UTF-8 bytes as octal."""
    if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
        return raw
    body = re.sub(r'\\[\\"tn]', lambda m: _ESCAPES[m[0]], raw[1:-1])
    data = _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), body.encode("utf-8", "surrogateescape"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # left quoted: safe_repo_path refuses the backslashes


def safe_repo_path(raw: str, label: str) -> PurePosixPath:
    """A repository-relative path, or UnsafeInputError naming the offender."""
    unquoted = _unquote(raw)
    name = unquoted[2:] if unquoted[:2] in ("a/", "b/") else unquoted
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


def _check_headers(lines: list[str], label: str) -> None:
    """Every `@@` line parses, and no hunk body runs past the counts its header gives."""
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("@@"):
            continue
        match = _HUNK_HEADER.match(line)
        if not match:
            raise UnsafeInputError(f"{label}: garbled hunk header {line.rstrip()!r}")
        old = int(match[2]) if match[2] is not None else 1
        new = int(match[4]) if match[4] is not None else 1
        while i < len(lines) and (old > 0 or new > 0):
            kind = lines[i][:1]
            old -= kind in (" ", "-", "")
            new -= kind in (" ", "+", "")
            i += 1
        while i < len(lines) and lines[i].startswith("\\"):
            i += 1
        follows = lines[i] if i < len(lines) else ""
        after = lines[i + 1] if i + 1 < len(lines) else ""
        file_header = follows.startswith("--- ") and after.startswith("+++ ")
        if follows[:1] in ("+", "-", " ") and not file_header and follows.rstrip("\n") != "-- ":
            raise UnsafeInputError(
                f"{label}: the hunk {line.rstrip()!r} holds more lines than its header counts"
            )


def _normalize_newlines(text: str) -> str:
    """A diff whose own header lines end in CRLF was converted wholesale (an editor, a mail
    client): strip one CR per line. Diffs of CRLF files keep their LF headers and are kept."""
    headers = [line for line in text.split("\n") if line.startswith(("--- ", "+++ ", "@@ "))]
    if headers and all(line.endswith("\r") for line in headers):
        return "\n".join(line.removesuffix("\r") for line in text.split("\n"))
    return text


def _hunk(raw_hunk: object) -> Hunk:
    """The hunk's lines, as many as its header counts: unidiff reads a blank line after the
    last hunk (a diff file ending in an empty line) as one more context line."""
    old: list[str] = []
    new: list[str] = []
    previous: list[list[str]] = []
    old_left = raw_hunk.source_length  # type: ignore[attr-defined]
    new_left = raw_hunk.target_length  # type: ignore[attr-defined]
    for line in raw_hunk:  # type: ignore[attr-defined]
        if line.line_type == LINE_TYPE_NO_NEWLINE:
            for side in previous:
                side[-1] = side[-1].removesuffix("\n")
            continue
        if old_left <= 0 and new_left <= 0:
            break
        old_left -= not line.is_added
        new_left -= not line.is_removed
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


def _unsupported(patched: object) -> str:
    if patched.is_binary_file:  # type: ignore[attr-defined]
        return "a binary change"
    if patched.is_symlink:  # type: ignore[attr-defined]
        return "a symlink change"
    if patched.is_submodule:  # type: ignore[attr-defined]
        return "a submodule change"
    info = [str(line) for line in patched.patch_info or ()]  # type: ignore[attr-defined]
    if not len(patched) and any(line.startswith("new mode") for line in info):  # type: ignore[arg-type]
        return "a file-mode change"
    return ""


def _blobs(patched: object) -> tuple[str, str] | None:
    """The blob ids of the entry's `index` line; None without one, or when it is not an
    `index <id>..<id>[ <mode>]` line (the ids are then no one's to look up)."""
    for line in patched.patch_info or ():  # type: ignore[attr-defined]
        if match := _INDEX.fullmatch(str(line)):
            return match[1], match[2]
    return None


def parse_diff(text: str, label: str) -> tuple[FilePatch, ...]:
    """Parse `text` (a PR's diff or a local diff file); `label` names it in errors."""
    if not text.strip():
        raise UnsafeInputError(f"{label}: the diff is empty: nothing to port")
    text = _normalize_newlines(text)
    _check_headers(text.split("\n"), label)
    try:
        patch_set = PatchSet(text)
    except UnidiffParseError as err:
        raise UnsafeInputError(f"{label}: malformed diff: {err}") from None
    if not patch_set:
        raise UnsafeInputError(f"{label}: no file changes found in the diff")
    return tuple(_file_patch(patched, label) for patched in patch_set)


def _file_patch(patched: Any, label: str) -> FilePatch:
    """One file entry of the diff, its paths checked and its kind named."""
    old, new = (
        None if name == DEV_NULL else safe_repo_path(name, label)
        for name in (patched.source_file, patched.target_file)
    )
    if old is None and new is None:
        raise UnsafeInputError(f"{label}: a file entry with /dev/null on both sides")
    kind = _kind(patched, old, new)
    path = new or old
    assert path is not None  # both None is refused above
    hunks = tuple(_hunk(h) for h in patched)
    unsupported = _unsupported(patched)
    if kind is FileChange.MODIFIED and not hunks and not unsupported:
        raise UnsafeInputError(f"{label}: {path}: a file entry without any hunk")
    return FilePatch(path, old, kind, hunks, unsupported, _blobs(patched))


def _kind(patched: Any, old: PurePosixPath | None, new: PurePosixPath | None) -> FileChange:
    """By the headers, not by unidiff's is_added_file: filling an empty file is `-0,0` too."""
    info = [str(line) for line in patched.patch_info or ()]
    if old is None or any(line.startswith("new file mode") for line in info):
        return FileChange.ADDED
    if new is None or any(line.startswith("deleted file mode") for line in info):
        return FileChange.DELETED
    if patched.is_rename:
        return FileChange.RENAMED
    return FileChange.MODIFIED
