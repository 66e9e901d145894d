"""The drift guard: the image about to run must hold the files its overlay was made from.

An overlay replaces whole files. Mounted over an image whose own copy of a file is
not the one the patches were ported onto (a tag that moved, an image rebuilt under
the same name, a hand-loaded lookalike), it would silently undo whatever that image
changed in the file. So before anything starts the service, every overlaid file's
vanilla bytes are read from the image itself, through the engine (a created,
never-started container of it), and compared with the lock's `vanilla_sha256`.
The comparison takes any image source; only `guard` and `guard_local` need the engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from patchkeeper.errors import DriftError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef, ImageSource, ResolvedImage
from patchkeeper.overlay.lock import Lock
from patchkeeper.verify.image_runtime import local_image, pull_image

LINK = "a link to "  # how a path that is a symlink in the image shows (a lock never holds it)


@dataclass(frozen=True)
class Drift:
    """One overlaid file whose bytes in the image are not the lock's vanilla."""

    path: str
    locked: str | None  # None: the lock says the image has no such file
    found: str | None  # None: the image has no such file; or `a link to <target>`

    def __str__(self) -> str:
        def show(seen: str | None) -> str:
            if seen is None:
                return "absent"
            return seen if seen.startswith(LINK) else f"sha256 {seen[:12]}…"

        return f"{self.path}: image has {show(self.found)}, lock's vanilla is {show(self.locked)}"


def drifted(source: ImageSource, image: ResolvedImage, lock: Lock) -> list[Drift]:
    """Every locked file whose vanilla bytes in `image`, read from `source`, are not the lock's."""
    if not lock.files:
        return []
    read = source.read(image, [PurePosixPath(f.path) for f in lock.files])
    found: list[Drift] = []
    for locked in lock.files:
        file = read.get(PurePosixPath(locked.path))
        if file is not None and file.via_symlink:
            seen: str | None = f"{LINK}{file.resolved}"
        else:
            seen = hashlib.sha256(file.content).hexdigest() if file else None
        if seen != locked.vanilla_sha256:
            found.append(Drift(locked.path, locked.vanilla_sha256, seen))
    return found


def refuse_drift(source: ImageSource, image: ResolvedImage, lock: Lock) -> None:
    """Raise DriftError (exit 2) naming each file when `image` is not the lock's."""
    found = drifted(source, image, lock)
    if found:
        listed = "\n  ".join(str(d) for d in found)
        raise DriftError(
            f"image {lock.image.ref} ({image.image_id[:19]}) is not the image this overlay was "
            f"made from; refusing to start it with these files:\n  {listed}\n"
            "re-run `patchkeeper sync` against this image"
        )


def guard(client: Any, image_id: str, lock: Lock) -> None:
    """`refuse_drift` for image `image_id` in the engine behind `client`."""
    image = ResolvedImage(ImageRef.parse(lock.image.ref), image_id, lock.image.digest)
    refuse_drift(EngineSource(client), image, lock)


def guard_local(lock: Lock, pull: bool) -> str | None:
    """The guard for the lock's image in the local engine (pulled by digest when `pull`).

    Returns the image id checked; None when there is no engine or (without `pull`) no
    such image here: a runtime that does not run the image has nothing to guard.
    """
    try:
        client = EngineSource().client
    except UnreachableError:
        if pull:
            raise
        return None
    image = local_image(client, lock)
    if image is None and pull:
        image = pull_image(client, lock)
    if image is not None:
        guard(client, image, lock)
    return image
