"""Write an overlay atomically and never touch an existing one.

A single-file bind mount pins the inode it was given, so rewriting a file in
place (or renaming over it) would leave running containers on stale bytes.
Each overlay therefore lives in its own content-addressed directory under
`<out>/.store/`, built in a temporary directory and renamed into place; the
friendly `<out>/<tag>` name is a symlink swapped atomically to the newest one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from filelock import FileLock

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import ROOTFS, TEMPLATE_FILE, VANILLA
from patchkeeper.overlay.lock import LOCK_NAME, Lock, read_lock

STORE = ".store"
BASE_COMPOSE = "compose.yaml"
OVERRIDE_COMPOSE = "compose.override.yaml"


def _write(path: Path, data: bytes, mode: int = 0o444) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def write_overlay(
    out: Path,
    name: str,
    lock: Lock,
    files: Mapping[PurePosixPath, tuple[bytes, int]],
    vanilla: Mapping[PurePosixPath, bytes],
    template: str | None,
    base_compose: str,
    override_compose: str,
) -> tuple[Path, bool]:
    """Return (overlay directory, whether it was newly created)."""
    store = out / STORE
    store.mkdir(parents=True, exist_ok=True)
    final = (store / f"{name}-{lock.fingerprint[:16]}").resolve()
    with FileLock(str(out / ".patchkeeper.lock")):
        _remove_abandoned(store)
        created = not final.exists()
        if created:
            _build(store, final, lock, files, vanilla, template, base_compose, override_compose)
        elif read_lock(final).fingerprint != lock.fingerprint:
            raise ConfigError(f"{final}: exists with a different lock; refusing to touch it")
        _point(out / name, final)
    return final, created


def _build(
    store: Path,
    final: Path,
    lock: Lock,
    files: Mapping[PurePosixPath, tuple[bytes, int]],
    vanilla: Mapping[PurePosixPath, bytes],
    template: str | None,
    base_compose: str,
    override_compose: str,
) -> None:
    tmp = Path(tempfile.mkdtemp(dir=store, prefix=".tmp-"))
    try:
        for path, (data, mode) in sorted(files.items()):
            _write(tmp / ROOTFS / str(path).lstrip("/"), data, (mode & 0o555) | 0o444)
        for path, data in sorted(vanilla.items()):
            _write(tmp / VANILLA / str(path).lstrip("/"), data)
        if template is not None:
            _write(tmp / TEMPLATE_FILE, template.encode())
        _write(tmp / BASE_COMPOSE, base_compose.encode())
        _write(tmp / OVERRIDE_COMPOSE, override_compose.encode())
        _write(tmp / LOCK_NAME, lock.dump().encode())  # last: a lock means complete
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _point(link: Path, target: Path) -> None:
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link}: exists and is not a patchkeeper link; move it away")
    staging = link.with_name(f".{link.name}.link-{os.getpid()}")
    staging.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), staging)
    os.replace(staging, link)


def _remove_abandoned(store: Path) -> None:
    """Temporary directories left by a sync that was killed (we hold the lock)."""
    for leftover in store.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
