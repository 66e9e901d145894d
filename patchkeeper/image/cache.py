"""A read-through cache of image files, keyed by image id: images never change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.image.model import ImageFile, ImageRef, ImageSource, ResolvedImage
from patchkeeper.paths import atomic_write, cache_dir


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

    def read(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, ImageFile | None]:
        folder = self.root / image.image_id.replace(":", "-")
        found: dict[PurePosixPath, ImageFile | None] = {}
        missing = []
        for path in paths:
            hit, entry = self._load(folder, path)
            if hit:
                found[path] = entry
            else:
                missing.append(path)
        if missing:
            fresh = self.inner.read(image, missing)
            for path, file in fresh.items():
                self._store(folder, path, file)
            found.update(fresh)
        return {path: found[path] for path in paths}

    @staticmethod
    def _key(folder: Path, path: PurePosixPath) -> Path:
        return folder / hashlib.sha256(str(path).encode()).hexdigest()

    def _load(self, folder: Path, path: PurePosixPath) -> tuple[bool, ImageFile | None]:
        """(hit, file): a hit with None means the image is known to lack the path."""
        key = self._key(folder, path)
        try:
            meta = json.loads(key.with_suffix(".json").read_text())
            if meta.get("absent"):
                return True, None
            content = key.with_suffix(".bin").read_bytes()
        except (OSError, ValueError):
            return False, None
        if hashlib.sha256(content).hexdigest() != meta.get("sha256"):
            return False, None
        return True, ImageFile(path, content, int(meta["mode"]), PurePosixPath(meta["resolved"]))

    def _store(self, folder: Path, path: PurePosixPath, file: ImageFile | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        key = self._key(folder, path)
        if file is None:
            meta: dict[str, object] = {"path": str(path), "absent": True}
        else:
            atomic_write(key.with_suffix(".bin"), file.content)
            meta = {
                "path": str(path),
                "resolved": str(file.resolved),
                "mode": file.mode,
                "sha256": hashlib.sha256(file.content).hexdigest(),
            }
        atomic_write(key.with_suffix(".json"), json.dumps(meta).encode())
