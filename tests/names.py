"""Names for what tests create in shared services (engine images, registry repositories,
compose projects): each carries a fresh token, so two runs sharing the engine never
collide, and one run's cleanup never removes what another run is using."""

from __future__ import annotations

import uuid


def unique(name: str) -> str:
    """`name` with a fresh token appended: `pk-test/demo` -> `pk-test/demo-1a2b3c4d`."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
