"""Conflicts a person can act on, and hand resolutions that last.

On conflict, `sync --conflicts DIR` writes each conflicting file with diff3
markers (image / PR base / PR result), plus an index, `conflicts.json`. A person
edits the marked files and runs `patchkeeper resolve`, which records each one
beside its patchset (`<patchset>.resolutions/`), keyed by the file as the patch
found it in the image (its sha256; the vanilla file unless an earlier patch
changed it) and the PR diff's sha256. A later sync whose file and diff are the
same reuses the resolution; when only the image's file changed (a new nightly
touched it), the resolution is tried as a three-way merge (base: the file it was
recorded against, theirs: the resolution) and used only when that merges
cleanly. None of git's rerere applies here: it keys on conflict hunks inside one
repository's merges, not on an image's file and a PR's diff.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from patchkeeper.errors import ConfigError
from patchkeeper.paths import atomic_write

if TYPE_CHECKING:
    from patchkeeper.patching.port import PatchOutcome

INDEX = "conflicts.json"
_MARKERS = ("<<<<<<< ", "||||||| ", "=======\n", ">>>>>>> ")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Resolution:
    path: PurePosixPath  # in-image path
    ours: bytes  # the file as the patch found it when the resolution was recorded
    diff_sha256: str
    resolved: bytes

    @property
    def ours_sha256(self) -> str:
        return sha256(self.ours)


def store(patchset_file: Path) -> Path:
    """Where a patchset's resolutions live: beside it, `<name>.resolutions/`."""
    return patchset_file.with_name(f"{patchset_file.stem}.resolutions")


def _entry(root: Path, patch_key: str, resolution: Resolution) -> Path:
    path_id = sha256(str(resolution.path).encode())[:12]
    name = f"{path_id}-{resolution.ours_sha256[:12]}-{resolution.diff_sha256[:12]}"
    return root / patch_key / name


def record(patchset_file: Path, patch_key: str, resolution: Resolution) -> Path:
    """Store one resolution (replacing one with the same key); its directory."""
    entry = _entry(store(patchset_file), patch_key, resolution)
    entry.mkdir(parents=True, exist_ok=True)
    atomic_write(entry / "ours", resolution.ours)
    atomic_write(entry / "resolved", resolution.resolved)
    meta = {
        "path": str(resolution.path),
        "ours_sha256": resolution.ours_sha256,
        "diff_sha256": resolution.diff_sha256,
        "resolved_sha256": sha256(resolution.resolved),
    }
    atomic_write(entry / "resolution.json", (json.dumps(meta, indent=2) + "\n").encode())
    return entry


def load(patchset_file: Path, patch_key: str) -> tuple[Resolution, ...]:
    """Every resolution recorded for one patch; a tampered or torn entry is bad input."""
    folder = store(patchset_file) / patch_key
    if not folder.is_dir():
        return ()
    found = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            meta = json.loads((entry / "resolution.json").read_text())
            ours, resolved = (entry / "ours").read_bytes(), (entry / "resolved").read_bytes()
            intact = (
                sha256(ours) == meta["ours_sha256"] and sha256(resolved) == meta["resolved_sha256"]
            )
            resolution = Resolution(
                PurePosixPath(meta["path"]), ours, str(meta["diff_sha256"]), resolved
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{entry}: unreadable resolution: {err}") from None
        if not intact:
            raise ConfigError(f"{entry}: resolution files do not match their sha256")
        found.append(resolution)
    return tuple(found)


def matching(
    resolutions: Sequence[Resolution], path: PurePosixPath, diff_sha256: str
) -> list[Resolution]:
    """Resolutions of this file for this very diff (a PR that moved on needs a new one)."""
    return [r for r in resolutions if r.path == path and r.diff_sha256 == diff_sha256]


def has_markers(text: str) -> bool:
    return any(line.startswith(_MARKERS) for line in text.splitlines(keepends=True))


def write_conflicts(
    outcomes: Sequence[PatchOutcome], directory: Path
) -> dict[tuple[str, str], Path]:
    """Write each conflicting file's diff3-marked text under `directory`, with the index
    `resolve` reads; {(patch id, in-image path): marked file}. Files whose patch has no known
    base (a local diff) have no three-way text and are listed without one."""
    written: dict[tuple[str, str], Path] = {}
    entries = []
    for outcome in outcomes:
        change = outcome.change
        for file in outcome.files:
            if file.ours is None or file.three_way is None:
                continue
            marked = directory / change.id / str(file.path).lstrip("/")
            ours = directory / ".ours" / change.id / str(file.path).lstrip("/")
            for target, data in ((marked, file.marked.encode()), (ours, file.ours)):
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data)
            written[(change.id, str(file.path))] = marked
            entries.append(
                {
                    "patch": change.id,
                    "patchset": change.patchset,
                    "patch_key": change.patch.key,
                    "label": change.label,
                    "path": str(file.path),
                    "file": str(marked.relative_to(directory)),
                    "ours": str(ours.relative_to(directory)),
                    "ours_sha256": sha256(file.ours),
                    "diff_sha256": change.diff_sha256,
                    "hunks": [
                        {"header": h.hunk.header, "line": h.line, "reason": h.reason}
                        for h in file.hunks
                        if h.status.value == "conflict"
                    ],
                }
            )
    directory.mkdir(parents=True, exist_ok=True)
    index = json.dumps({"format": 1, "files": entries}, indent=2) + "\n"
    atomic_write(directory / INDEX, index.encode())
    return written
