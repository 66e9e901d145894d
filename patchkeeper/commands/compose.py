"""`patchkeeper compose`: print the compose override of one or several overlays.

Several overlays (one per recipe or service) merge into one override, services
sorted by name, so a fleet's override diffs cleanly in pull requests. Bind sources
are made absolute, so the printed override works from any directory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patchkeeper.config.load import read_yaml
from patchkeeper.errors import EXIT_OK, ConfigError
from patchkeeper.overlay import compose
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.write import OVERRIDE_COMPOSE


def merged(overlays: Sequence[Path]) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for overlay in overlays:
        read_lock(overlay)  # refuses a directory that is not a complete overlay
        document = compose.absolute(read_yaml(overlay / OVERRIDE_COMPOSE) or {}, overlay)
        for name, spec in (document.get("services") or {}).items():
            if name in services:
                raise ConfigError(f"{overlay}: service {name!r} is already set by another overlay")
            services[name] = spec
    return {"services": dict(sorted(services.items()))}


def run(overlays: Sequence[Path]) -> int:
    sys.stdout.write(compose.dump(merged(overlays)))
    return EXIT_OK
