"""The conflicts directory: what `sync --conflicts DIR` writes and `resolve` reads.

For each file a three-way merge refuses, DIR holds the file with diff3 markers at
`<patchset>/<patch>/<in-image path>`, the file as the patch found it under
`.ours/`, and the index `conflicts.json`. The index is an artefact people pass
around (a CI artefact, a colleague's directory), so it is read into a typed
model: names that become path components are checked as such, digests as hex,
paths as relative paths inside DIR. Files a person has edited since sync wrote
them are never overwritten by a later sync.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from patchkeeper.config.load import read_json
from patchkeeper.errors import ConfigError, OutputError
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import PatchOutcome
from patchkeeper.patching.resolutions import Component, InImage, Sha256, load, sha256
from patchkeeper.paths import atomic_write

INDEX = "conflicts.json"
OURS = ".ours"


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    parts = value.split("/")
    if "\0" in value or path.is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise ValueError("must be a relative path inside the conflicts directory")
    return value


Relative = Annotated[str, AfterValidator(_relative)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ConflictHunk(_Model):
    header: str
    line: int | None
    reason: str


class ConflictEntry(_Model):
    """One marked file: which patch and in-image path, and the sha256s resolve checks."""

    patch: str  # `<patchset>/<patch_key>`
    patchset: Component
    patch_key: Component
    label: str
    path: InImage
    file: Relative  # the marked file, relative to DIR
    ours: Relative  # the file as the patch found it, relative to DIR
    ours_sha256: Sha256
    marked_sha256: Sha256 | None = None  # as written; absent in indexes of older syncs
    diff_sha256: Sha256
    hunks: tuple[ConflictHunk, ...]

    @model_validator(mode="after")
    def _patch_is_its_parts(self) -> ConflictEntry:
        if self.patch != f"{self.patchset}/{self.patch_key}":
            raise ValueError(f"patch {self.patch!r} is not '{self.patchset}/{self.patch_key}'")
        return self


class ConflictsIndex(_Model):
    format: Literal[1]
    files: tuple[ConflictEntry, ...]


def read_index(directory: Path) -> ConflictsIndex:
    """The index in `directory`, shape checked (exit 2 naming the file and the field)."""
    if not (directory / INDEX).is_file():
        raise ConfigError(f"{directory}: no {INDEX}; is it a directory `sync --conflicts` wrote?")
    return read_json(ConflictsIndex, directory / INDEX)


def inside(directory: Path, name: str) -> Path:
    """`directory / name`, refused when a link takes it outside `directory`."""
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise ConfigError(f"{directory / INDEX}: {name!r} points outside {directory}")
    return path


def _recorded(entry: ConflictEntry, data: bytes, patchsets: Mapping[str, Path]) -> bool:
    """Whether `data` is already in the resolution store (`resolve` recorded it)."""
    patchset = patchsets.get(entry.patchset)
    return patchset is not None and any(
        str(r.path) == entry.path and r.resolved == data for r in load(patchset, entry.patch_key)
    )


def edited(directory: Path, patchsets: Mapping[str, Path]) -> list[str]:
    """Marked files in `directory` changed since sync wrote them and not yet recorded (a
    person's work), by their names in the index; `patchsets`: name -> patchset file."""
    if not directory.is_dir() or not (directory / INDEX).exists():
        return []
    found = []
    for entry in read_index(directory).files:
        marked = inside(directory, entry.file)
        if not marked.exists():
            continue
        try:
            data = marked.read_bytes()
        except OSError as err:
            raise ConfigError(f"{marked}: cannot read: {err.strerror or err}") from None
        if sha256(data) != entry.marked_sha256 and not _recorded(entry, data, patchsets):
            found.append(entry.file)
    return found


def refuse_overwriting(directory: Path, patchsets: Mapping[str, Path]) -> None:
    """Preflight for `sync --conflicts DIR`: never overwrite a person's half-done work."""
    if changed := edited(directory, patchsets):
        raise OutputError(
            f"--conflicts {directory}: holds marked files edited since sync wrote them and "
            f"not recorded: {', '.join(changed)}; finish them and run `patchkeeper resolve`, "
            "or give another directory"
        )


def unmarked(outcomes: Sequence[PatchOutcome]) -> list[str]:
    """Conflicting files with no three-way text to write (a local diff matched exactly)."""
    return [
        f"{o.change.patchset}/{o.change.label}: {f.path}"
        for o in outcomes
        for f in o.files
        if f.ours is not None and f.three_way is None
    ]


def write_conflicts(
    outcomes: Sequence[PatchOutcome], directory: Path
) -> dict[tuple[str, str], Path]:
    """Write each conflicting file's diff3-marked text under `directory`, with the index
    `resolve` reads; {(patch id, in-image path): marked file}. Files matched exactly (a local
    diff with no upstream blob to merge against) have no three-way text and are left out
    (see `unmarked`)."""
    written: dict[tuple[str, str], Path] = {}
    entries = []
    for outcome in outcomes:
        change = outcome.change
        for file in outcome.files:
            if file.ours is None or file.three_way is None:
                continue
            marked = directory / change.id / str(file.path).lstrip("/")
            ours = directory / OURS / change.id / str(file.path).lstrip("/")
            text = file.marked.encode("utf-8", "surrogateescape")
            for target, data in ((marked, text), (ours, file.ours)):
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data)
            written[(change.id, str(file.path))] = marked
            entry = ConflictEntry(
                patch=change.id,
                patchset=change.patchset,
                patch_key=change.patch.key,
                label=change.label,
                path=str(file.path),
                file=str(marked.relative_to(directory)),
                ours=str(ours.relative_to(directory)),
                ours_sha256=sha256(file.ours),
                marked_sha256=sha256(text),
                diff_sha256=change.diff_sha256,
                hunks=tuple(
                    ConflictHunk(header=h.hunk.header, line=h.line, reason=h.reason)
                    for h in file.hunks
                    if h.status is HunkStatus.CONFLICT
                ),
            )
            entries.append(entry.model_dump(mode="json"))
    directory.mkdir(parents=True, exist_ok=True)
    index = json.dumps({"format": 1, "files": entries}, indent=2) + "\n"
    atomic_write(directory / INDEX, index.encode())
    return written
