"""A read-through cache of image files, keyed by where they were read from.

Images never change, but sources can lie: an edited OCI layout can claim a genuine
image id. Results are cached only under the image's `provenance` (the engine's image,
or a registry and the verified manifest digest), so no source can poison another's,
and images without one (layouts) are never cached here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from patchkeeper.image.model import (
    ImageFile,
    ImageRef,
    ImageSource,
    PathKind,
    ResolvedImage,
)
from patchkeeper.paths import atomic_write, cache_dir, directory

log = logging.getLogger(__name__)


class _Entry(BaseModel):
    """One cached path's record (`<sha256 of the path>.json`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    absent: bool = False
    sha256: str | None = None
    mode: int = 0
    resolved: str | None = None


_NAMES = TypeAdapter(list[str])


class CachedSource:
    """Wraps any ImageSource; a second read of the same image costs nothing."""

    def __init__(self, inner: ImageSource, root: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.root = root or cache_dir() / "image-files"

    def tags(self, repository: str) -> list[str]:
        return self.inner.tags(repository)

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        return self.inner.resolve(ref)

    def accounting(self) -> dict[str, Any]:
        return self.inner.accounting()

    def kinds(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, PathKind]:
        return self.inner.kinds(image, paths)  # asked rarely (added files only): not cached

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        if image.provenance is None:
            return self.inner.read(image, paths, git_dirs)
        folder = self.root / hashlib.sha256(image.provenance.encode()).hexdigest()
        found: dict[PurePosixPath, ImageFile | None] = {}
        missing, missing_dirs = [], []
        for path in paths:
            hit, entry = self._load(folder, path)
            if hit:
                found[path] = entry
            else:
                missing.append(path)
        for git_dir in git_dirs:
            listed = self._listing(folder, git_dir)
            loaded = [self._load(folder, p) for p in listed or []]
            if listed is None or not all(hit and entry for hit, entry in loaded):
                missing_dirs.append(git_dir)
                continue
            found.update({entry.path: entry for _, entry in loaded if entry})
        log.info(
            "file cache: %d of %d file(s) and %d of %d git dir(s) of %s were cached",
            len(paths) - len(missing),
            len(paths),
            len(git_dirs) - len(missing_dirs),
            len(git_dirs),
            image.ref,
        )
        if missing or missing_dirs:
            fresh = self.inner.read(image, missing, missing_dirs)
            for path, file in fresh.items():
                self._store(folder, path, file)
            for git_dir in missing_dirs:
                names = sorted(str(p) for p in fresh if p == git_dir or git_dir in p.parents)
                atomic_write(self._key(folder, git_dir, ".dir"), json.dumps(names).encode())
            found.update(fresh)
        return found

    @staticmethod
    def _key(folder: Path, path: PurePosixPath, suffix: str) -> Path:
        return folder / (hashlib.sha256(str(path).encode()).hexdigest() + suffix)

    def _listing(self, folder: Path, git_dir: PurePosixPath) -> list[PurePosixPath] | None:
        """The git dir's cached listing; None (a miss) when absent or of another shape."""
        try:
            names = _NAMES.validate_json(self._key(folder, git_dir, ".dir").read_bytes())
        except (OSError, ValidationError):
            return None
        return [PurePosixPath(n) for n in names]

    def _load(self, folder: Path, path: PurePosixPath) -> tuple[bool, ImageFile | None]:
        """(hit, file): a hit with None means the image is known to lack the path. An entry
        that is missing, damaged or of another shape is a miss: read again, never a crash."""
        try:
            meta = _Entry.model_validate_json(self._key(folder, path, ".json").read_bytes())
            if meta.absent:
                return True, None
            content = self._key(folder, path, ".bin").read_bytes()
        except (OSError, ValidationError):
            return False, None
        if meta.resolved is None or hashlib.sha256(content).hexdigest() != meta.sha256:
            return False, None
        return True, ImageFile(path, content, meta.mode, PurePosixPath(meta.resolved))

    def _store(self, folder: Path, path: PurePosixPath, file: ImageFile | None) -> None:
        directory(folder, "image file cache directory")
        if file is None:
            meta: dict[str, object] = {"path": str(path), "absent": True}
        else:
            atomic_write(self._key(folder, path, ".bin"), file.content)
            meta = {
                "path": str(path),
                "resolved": str(file.resolved),
                "mode": file.mode,
                "sha256": hashlib.sha256(file.content).hexdigest(),
            }
        atomic_write(self._key(folder, path, ".json"), json.dumps(meta).encode())
