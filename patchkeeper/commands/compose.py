"""`patchkeeper compose`: print an overlay's compose override."""

from __future__ import annotations

import sys
from pathlib import Path

from patchkeeper.errors import EXIT_OK
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.write import OVERRIDE_COMPOSE


def run(overlay: Path) -> int:
    read_lock(overlay)  # refuses a directory that is not a complete overlay
    sys.stdout.write((overlay / OVERRIDE_COMPOSE).read_text(encoding="utf-8"))
    return EXIT_OK
