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
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from patchkeeper.config.load import read_json
from patchkeeper.errors import ConfigError
from patchkeeper.paths import atomic_write

# Conflict markers as git writes them (marker size 7). A line of `=======` alone is not one:
# it underlines Markdown and reStructuredText headings; the others only ever come from a merge.
_MARKERS = ("<<<<<<<", "|||||||", ">>>>>>>")


def _component(value: str) -> str:
    """A name used as one path component: not empty, no separator, no leading dot."""
    if not value or "/" in value or "\0" in value or value.startswith(".") or len(value) > 200:
        raise ValueError("must be a name usable as a directory (no '/', no leading '.')")
    return value


def _in_image(value: str) -> str:
    if "\0" in value or not value.startswith("/") or {"..", "."} & set(value.split("/")):
        raise ValueError("must be an absolute in-image path without '.' or '..' parts")
    return value


Component = Annotated[str, AfterValidator(_component)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
InImage = Annotated[str, AfterValidator(_in_image)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def has_markers(data: bytes) -> bool:
    """Whether `data` holds a conflict marker line (`<<<<<<<`, `|||||||`, `>>>>>>>`, alone
    or followed by a space and a label)."""
    for line in data.decode("utf-8", "replace").split("\n"):
        line = line.removesuffix("\r")
        if any(line == m or line.startswith(m + " ") for m in _MARKERS):
            return True
    return False


@dataclass(frozen=True)
class Resolution:
    path: PurePosixPath  # in-image path
    ours: bytes  # the file as the patch found it when the resolution was recorded
    diff_sha256: str
    resolved: bytes

    @property
    def ours_sha256(self) -> str:
        return sha256(self.ours)


class _Record(BaseModel):
    """`resolution.json`: what an entry resolves, and the sha256 of its two files."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: InImage
    ours_sha256: Sha256
    diff_sha256: Sha256
    resolved_sha256: Sha256


def store(patchset_file: Path) -> Path:
    """Where a patchset's resolutions live: beside it, `<name>.resolutions/`."""
    return patchset_file.with_name(f"{patchset_file.stem}.resolutions")


def _folder(patchset_file: Path, patch_key: str) -> Path:
    try:
        _component(patch_key)
    except ValueError as err:
        raise ConfigError(f"patch {patch_key!r}: {err}") from None
    return store(patchset_file) / patch_key


def _entry(patchset_file: Path, patch_key: str, resolution: Resolution) -> Path:
    path_id = sha256(str(resolution.path).encode())[:12]
    name = f"{path_id}-{resolution.ours_sha256[:12]}-{resolution.diff_sha256[:12]}"
    return _folder(patchset_file, patch_key) / name


def record(patchset_file: Path, patch_key: str, resolution: Resolution) -> Path:
    """Store one resolution (replacing one with the same key); its directory."""
    meta = _Record(
        path=str(resolution.path),
        ours_sha256=resolution.ours_sha256,
        diff_sha256=resolution.diff_sha256,
        resolved_sha256=sha256(resolution.resolved),
    )
    entry = _entry(patchset_file, patch_key, resolution)
    entry.mkdir(parents=True, exist_ok=True)
    atomic_write(entry / "ours", resolution.ours)
    atomic_write(entry / "resolved", resolution.resolved)
    text = json.dumps(meta.model_dump(mode="json"), indent=2) + "\n"
    atomic_write(entry / "resolution.json", text.encode())
    return entry


def load(patchset_file: Path, patch_key: str) -> tuple[Resolution, ...]:
    """Every resolution recorded for one patch; a tampered, torn or still-marked entry is
    bad input."""
    root, folder = store(patchset_file), _folder(patchset_file, patch_key)
    for place in (root, folder):
        if place.exists() and not place.is_dir():
            raise ConfigError(f"{place}: not a directory of resolutions; move it away")
    if not folder.is_dir():
        return ()
    found = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        meta = read_json(_Record, entry / "resolution.json")
        try:
            ours, resolved = (entry / "ours").read_bytes(), (entry / "resolved").read_bytes()
        except OSError as err:
            raise ConfigError(f"{entry}: unreadable resolution: {err}") from None
        if sha256(ours) != meta.ours_sha256 or sha256(resolved) != meta.resolved_sha256:
            raise ConfigError(f"{entry}: resolution files do not match their sha256")
        if has_markers(resolved):
            raise ConfigError(f"{entry / 'resolved'}: still holds conflict markers")
        found.append(Resolution(PurePosixPath(meta.path), ours, meta.diff_sha256, resolved))
    return tuple(found)


def matching(
    resolutions: Sequence[Resolution], path: PurePosixPath, diff_sha256: str
) -> list[Resolution]:
    """Resolutions of this file for this very diff (a PR that moved on needs a new one)."""
    return [r for r in resolutions if r.path == path and r.diff_sha256 == diff_sha256]
