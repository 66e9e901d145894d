"""`patchkeeper.lock.json`: what an overlay holds, and why, for one exact image.

A lock names its `format`; one this patchkeeper does not know is refused, never read
as if it were its own (a newer writer's fields could mean something else). States are
the porting and upstream stages' StrEnums: written as their values, read back as
members, a value this patchkeeper does not know refused with its field named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from patchkeeper.errors import ConfigError
from patchkeeper.patching.diff import FileChange
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, PatchState
from patchkeeper.upstream.model import PrState

LOCK_NAME = "patchkeeper.lock.json"
FORMAT = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockedImage(_Model):
    ref: str
    digest: str | None
    id: str
    pinned: str
    commit: str
    source: str


class LockedPatchset(_Model):
    name: str
    upstream: str
    branch: str
    source_root: str
    commit: str


class Hunks(_Model):
    applied: int  # ported by the overlay, `drift` of them where the context had changed
    drift: int = 0
    present: int
    conflict: int


class LockedHunk(_Model):
    header: str
    status: HunkStatus
    line: int | None
    reason: str = ""


class LockedPatchFile(_Model):
    path: str
    kind: FileChange
    action: FileAction
    note: str = ""
    hunks: list[LockedHunk] = []
    conflict_file: str | None = None  # the diff3-marked file `sync --conflicts DIR` wrote


class LockedPatch(_Model):
    id: str
    patchset: str
    pr: int | None
    diff_file: str | None
    state: PatchState
    via: str
    pr_state: PrState
    title: str | None
    why: str
    witness: str | None
    head: str | None
    merge_commit: str | None
    base: str | None
    diff_sha256: str
    hunks: Hunks
    files: list[LockedPatchFile]


class LockedFile(_Model):
    path: str
    vanilla_sha256: str | None
    patched_sha256: str
    mode: int


class LockedTemplate(_Model):
    container_path: str
    sha256: str


class Lock(_Model):
    format: int = FORMAT
    generated_by: str
    recipe: str
    service: str
    fingerprint: str
    image: LockedImage
    patchsets: list[LockedPatchset]
    patches: list[LockedPatch]
    files: list[LockedFile]
    chat_template: LockedTemplate | None
    warnings: list[str]

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != FORMAT:
            raise ValueError(
                f"format {value} is not one this patchkeeper reads (it reads format {FORMAT}): "
                "re-run `patchkeeper sync`, or use the patchkeeper that wrote it"
            )
        return value

    def dump(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def read_lock(overlay: Path) -> Lock:
    path = overlay / LOCK_NAME
    try:
        return Lock.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{overlay}: not an overlay (no {LOCK_NAME})") from None
    except ValidationError as err:
        reasons = "; ".join(_reason(e) for e in err.errors(include_url=False))
        raise ConfigError(f"{path}: invalid lock: {reasons}") from None


def _reason(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "the document"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
