"""Write an overlay atomically and never touch an existing one.

A single-file bind mount pins the inode it was given, so rewriting a file in
place (or renaming over it) would leave running containers on stale bytes.
Each overlay therefore lives in its own content-addressed directory under
`<out>/.store/`, built in a temporary directory and renamed into place. The
friendly names are links one level down, swapped atomically: `<out>/<recipe>/<tag>`
and `<out>/<recipe>/latest` written by `sync`, `current` and `previous` by `up` (what
runs, and what a rollback returns to); being at the store directory's depth,
the compose files' `../../.store/<dir>/…` bind sources name the store directory
whichever way they are reached, so no link swap ever changes what a container mounts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import ROOTFS, TEMPLATE_FILE, VANILLA
from patchkeeper.overlay.lock import LOCK_NAME, Lock, read_lock

STORE = ".store"
BASE_COMPOSE = "compose.yaml"
OVERRIDE_COMPOSE = "compose.override.yaml"
LATEST = "latest"  # the newest overlay sync wrote for the recipe
CURRENT = "current"  # the overlay `up` last brought up and proved
PREVIOUS = "previous"  # the one before it: what a rollback returns to
LINKS = (LATEST, CURRENT, PREVIOUS)
DIR_MODE = 0o755  # readable by a docker-group user whoever ran sync (sudo included)
FILE_MODE = 0o444
# A failed night's container logs, kept in its store directory by `up`: beside the
# overlay, never part of it (not fingerprinted, never mounted).
FAILED_LOG_GLOB = "up-failed-*.log"


@dataclass(frozen=True)
class OverlayContent:
    """Everything an overlay directory holds besides its lock.

    `override` renders the compose override with its bind sources under a root: the
    fingerprint is taken with `./`, the file is written with the store path.
    """

    files: Mapping[PurePosixPath, tuple[bytes, int]]
    vanilla: Mapping[PurePosixPath, bytes]
    template: str | None
    base_compose: str
    override: Callable[[str], str]

    def entries(self, root: str) -> dict[str, tuple[bytes, int]]:
        """Each file by its path in the overlay, with its mode."""
        entries = {
            f"{ROOTFS}/{str(p).lstrip('/')}": (data, (mode & 0o555) | FILE_MODE)
            for p, (data, mode) in self.files.items()
        }
        entries |= {
            f"{VANILLA}/{str(p).lstrip('/')}": (data, FILE_MODE) for p, data in self.vanilla.items()
        }
        if self.template is not None:
            entries[TEMPLATE_FILE] = (self.template.encode(), FILE_MODE)
        entries[BASE_COMPOSE] = (self.base_compose.encode(), FILE_MODE)
        entries[OVERRIDE_COMPOSE] = (self.override(root).encode(), FILE_MODE)
        return entries


def fingerprint(lock: Lock, content: OverlayContent) -> str:
    """The overlay's identity: what it mounts and runs, and why; never how it was read.

    The lock without its descriptions (a PR's title and state come from GitHub or
    from git alone, the image from the engine or a registry) and every file of the
    directory: the service's compose files and template included, so a changed `args`
    or port is a new overlay, and the same bytes read another way are the same one.
    """
    return fingerprint_of(lock, content.entries("./"))


def fingerprint_of(lock: Lock, entries: Mapping[str, tuple[bytes, int]]) -> str:
    """`fingerprint` from the overlay's files by path, rendered with the `./` root."""
    described = lock.model_dump(
        mode="json",
        exclude={
            "generated_by": True,
            "fingerprint": True,
            "warnings": True,
            "image": {"source"},
            "patches": {"__all__": {"title", "pr_state"}},
        },
    )
    files = {
        path: [hashlib.sha256(data).hexdigest(), mode]
        for path, (data, mode) in sorted(entries.items())
    }
    body = json.dumps({"lock": described, "files": files}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def store_root(name: str) -> str:
    """Bind-source root for an overlay's compose files: its store directory, relative."""
    return f"../../{STORE}/{name}/"


def _mkdir(path: Path) -> None:
    """Create `path` (and parents) world-readable whatever the umask (sudo's is often 077)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, DIR_MODE)


def _write(path: Path, data: bytes, mode: int) -> None:
    _mkdir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def _safe_name(name: str, what: str) -> str:
    if not name or "/" in name or name.startswith("."):  # "." and ".." included
        raise ConfigError(f"{what} {name!r} cannot name an overlay directory")
    return name


def write_overlay(
    out: Path, recipe: str, tag: str, lock: Lock, content: OverlayContent
) -> tuple[Path, bool, Lock]:
    """Return (overlay directory, whether it was newly created, the lock as written)."""
    _safe_name(recipe, "recipe")
    _safe_name(tag, "tag")
    lock = lock.model_copy(update={"fingerprint": fingerprint(lock, content)})
    name = f"{tag}-{lock.fingerprint[:16]}"
    store = out / STORE
    _mkdir(store)
    final = store / name
    with FileLock(str(out / ".patchkeeper.lock")):
        _remove_abandoned(store)
        created = not final.exists()
        if created:
            _build(store, final, lock, content.entries(store_root(name)))
        elif read_lock(final).fingerprint != lock.fingerprint:
            raise ConfigError(f"{final}: exists with a different lock; refusing to touch it")
        _mkdir(out / recipe)
        point(out / recipe / tag, name)
        point(out / recipe / LATEST, name)
    return final.resolve(), created, lock


def _build(store: Path, final: Path, lock: Lock, entries: Mapping[str, tuple[bytes, int]]) -> None:
    tmp = Path(tempfile.mkdtemp(dir=store, prefix=".tmp-"))
    try:
        for path, (data, mode) in sorted(entries.items()):
            _write(tmp / path, data, mode)
        _write(tmp / LOCK_NAME, lock.dump().encode(), FILE_MODE)  # last: a lock means complete
        os.chmod(tmp, DIR_MODE)  # mkdtemp's is 0700
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def point(link: Path, name: str) -> None:
    """Point `<out>/<recipe>/<link>` at the store directory `name`, atomically.

    The target is written relative and lexically (`../.store/<name>`), never computed
    from resolved paths, so it holds when `<out>` is itself a link to another depth.
    """
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link}: exists and is not a patchkeeper link; move it away")
    staging = link.with_name(f".{link.name}.link-{os.getpid()}")
    staging.unlink(missing_ok=True)
    os.symlink(f"../{STORE}/{name}", staging)
    os.replace(staging, link)


def linked(link: Path) -> Path | None:
    """The store directory a recipe link names, when it names a complete overlay."""
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    if not (target / LOCK_NAME).is_file() or not stat.S_ISDIR(target.stat().st_mode):
        return None
    return target.resolve()


def _remove_abandoned(store: Path) -> None:
    """Temporary directories left by a sync that was killed (we hold the lock)."""
    for leftover in store.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
