"""The drift guard: the image about to run must hold the files its overlay was made from.

An overlay replaces whole files. Mounted over an image whose own copy of a file is
not the one the patches were ported onto (a tag that moved, an image rebuilt under
the same name, a hand-loaded lookalike), it would silently undo whatever that image
changed in the file. So before anything starts the service, every overlaid file's
vanilla bytes are read from the image itself, through the engine (a created,
never-started container of it), and compared with the lock's `vanilla_sha256`.
The comparison takes any image source; only `guard` and `guard_local` need the engine.

The overlay itself is checked too (`guard_service`): its store directory must still
be what sync fingerprinted (a file edited, added or removed after sync, or a lock
edited, is refused), and Compose, asked for its own model of the service, must run
the lock's pinned image with every overlaid file mounted from that directory (Compose
runs the override's `image:`, not the lock's).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.errors import DriftError, UnreachableError
from patchkeeper.image.engine import EngineSource, local_image, pull_image
from patchkeeper.image.model import ImageRef, ImageSource, ResolvedImage
from patchkeeper.overlay.compose import ROOTFS, overlay_mounts
from patchkeeper.overlay.lock import LOCK_NAME, Lock
from patchkeeper.overlay.service import Composed
from patchkeeper.overlay.write import (
    FAILED_LOG_GLOB,
    FILE_MODE,
    OVERRIDE_COMPOSE,
    fingerprint_of,
    store_root,
)

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
    image = local_image(client, lock.image)
    if image is None and pull:
        image = pull_image(client, lock.image)
    if image is not None:
        guard(client, image, lock)
    return image


def _short(digest: str) -> str:
    return f"sha256 {digest[:12]}…"


def _failed_log(rel: str) -> bool:
    """`up`'s log of a failed night, at the top of the store directory."""
    return "/" not in rel and PurePosixPath(rel).match(FAILED_LOG_GLOB)


def _store_entries(overlay: Path, lock: Lock) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """The store directory's files as `fingerprint_of` takes them (modes as sync gave
    them, from the lock: a checkout keeps only the executable bit), and what is not a
    regular file or directory there."""
    modes = {f"{ROOTFS}/{f.path.lstrip('/')}": (f.mode & 0o555) | FILE_MODE for f in lock.files}
    root = store_root(overlay.name).encode()
    entries: dict[str, tuple[bytes, int]] = {}
    odd: list[str] = []
    for top, dirs, files in os.walk(overlay):
        for name in sorted([*dirs, *files]):
            path = Path(top) / name
            rel = path.relative_to(overlay).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                odd.append(f"{rel}: not a regular file or directory")
            elif path.is_file() and rel != LOCK_NAME and not _failed_log(rel):
                data = path.read_bytes()
                if rel == OVERRIDE_COMPOSE:  # written with the store root, fingerprinted with ./
                    data = data.replace(root, b"./")
                entries[rel] = (data, modes.get(rel, FILE_MODE))
    return entries, odd


def store_fingerprint(overlay: Path, lock: Lock) -> str:
    """The fingerprint of `lock` with the files the store directory `overlay` holds now."""
    return fingerprint_of(lock, _store_entries(overlay, lock)[0])


def edited(overlay: Path, lock: Lock) -> list[str]:
    """How the store directory `overlay` differs from what sync wrote and fingerprinted
    (empty: it is the same); the fingerprint is recomputed from its files."""
    entries, found = _store_entries(overlay, lock)
    patched = {f"{ROOTFS}/{f.path.lstrip('/')}": f.patched_sha256 for f in lock.files}
    for rel in sorted(patched.keys() | {p for p in entries if p.startswith(f"{ROOTFS}/")}):
        if rel not in entries:
            found.append(f"{rel}: missing (the lock lists it)")
        elif rel not in patched:
            found.append(f"{rel}: not in the lock's files")
        elif (seen := hashlib.sha256(entries[rel][0]).hexdigest()) != patched[rel]:
            found.append(f"{rel}: {_short(seen)}, the lock's is {_short(patched[rel])}")
    if not found and fingerprint_of(lock, entries) != lock.fingerprint:
        found.append(f"its compose files, chat template or {LOCK_NAME} (fingerprint differs)")
    return found


def miscomposed(model: dict[str, Any], service: str, lock: Lock, overlay: Path) -> list[str]:
    """How Compose's model of `service` differs from the overlay: another image, or an
    overlaid file not mounted from `overlay` (empty: it runs what the lock says)."""
    spec = (model.get("services") or {}).get(service)
    if not isinstance(spec, dict):
        return [f"compose has no service {service!r}"]
    found = []
    if spec.get("image") != lock.image.pinned:
        found.append(f"image: compose runs {spec.get('image')}, the lock's is {lock.image.pinned}")
    sources: dict[str, str] = {}
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            sources[str(volume.get("target"))] = str(volume.get("source"))
        elif isinstance(volume, str) and volume.count(":") >= 1:  # v1 prints short syntax
            host, target = volume.split(":")[:2]
            sources[target] = host
    for mount in overlay_mounts(lock, overlay):
        source = sources.get(mount.target)
        if source is None or Path(source).resolve() != mount.source.resolve():
            found.append(
                f"{mount.target}: compose mounts {source or 'nothing'}, not {mount.source}"
            )
    return found


def guard_service(target: Composed, model: dict[str, Any]) -> None:
    """Raise DriftError (exit 2) unless the store directory is what sync wrote and
    Compose's `model` of the target's files runs the lock's image with the overlay's files."""
    problems = edited(target.overlay, target.lock)
    if problems:
        listed = "\n  ".join(problems)
        raise DriftError(
            f"{target.overlay}: changed since sync wrote it; refusing to mount it:\n  {listed}\n"
            "re-run `patchkeeper sync` (it writes a new overlay; a store directory is never "
            "rewritten)"
        )
    problems = miscomposed(model, target.service, target.lock, target.overlay)
    if problems:
        listed = "\n  ".join(problems)
        names = ", ".join(str(f) for f in target.files)
        raise DriftError(
            f"compose ({names}) would not run overlay {target.overlay.name} as its lock says; "
            f"refusing to start it:\n  {listed}"
        )
