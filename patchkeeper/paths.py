"""Where patchkeeper keeps its caches (overridable for tests and CI)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from platformdirs import user_cache_path, user_log_path

from patchkeeper.errors import OutputError


def directory(path: Path, what: str) -> Path:
    """`path`, made if missing; one that cannot be a directory (a file is in the way, no
    permission) is an OutputError naming it and `what` it is for."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        in_the_way = isinstance(err, FileExistsError | NotADirectoryError)
        reason = "not a directory (a file is in the way)" if in_the_way else err.strerror
        raise OutputError(f"{what} {path}: {reason}") from None
    return path


def cache_dir() -> Path:
    override = os.environ.get("PATCHKEEPER_CACHE_DIR")
    path = Path(override) if override else user_cache_path("patchkeeper", appauthor=False)
    return directory(path, "cache directory (PATCHKEEPER_CACHE_DIR)")


def env_dir() -> Path:
    """Where verify keeps its SGLang venvs and tiny model (large, worth keeping)."""
    override = os.environ.get("PATCHKEEPER_ENV_DIR")
    path = Path(override) if override else cache_dir() / "envs"
    return directory(path, "environment directory (PATCHKEEPER_ENV_DIR)")


def atomic_write(target: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def log_dir() -> Path:
    """Where crash logs go: the platform's user log dir (`PATCHKEEPER_LOG_DIR` overrides)."""
    override = os.environ.get("PATCHKEEPER_LOG_DIR")
    path = Path(override) if override else user_log_path("patchkeeper", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path
