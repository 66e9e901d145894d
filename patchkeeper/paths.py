"""Where patchkeeper keeps its caches (overridable for tests and CI)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_path


def cache_dir() -> Path:
    override = os.environ.get("PATCHKEEPER_CACHE_DIR")
    path = Path(override) if override else user_cache_path("patchkeeper", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path
