"""Git blob ids, and contents whose ids collide on a prefix (abbreviated-id tests)."""

from __future__ import annotations

import hashlib
import itertools


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def colliding(prefix: int, tail: bytes = b"") -> tuple[bytes, bytes]:
    """Two file contents (ending in `tail`) whose blob ids share `prefix` hex digits."""
    seen: dict[str, bytes] = {}
    for n in itertools.count():
        data = f"value = {n}\n".encode() + tail
        head = blob_id(data)[:prefix]
        if head in seen:
            return seen[head], data
        seen[head] = data
    raise AssertionError("unreachable")
