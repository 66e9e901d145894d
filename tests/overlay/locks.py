"""Small, valid locks for overlay unit tests (what `sync` writes, minus the porting)."""

from __future__ import annotations

import hashlib
from typing import Any

from patchkeeper.overlay.lock import Lock

PINNED = "example/sglang@sha256:" + "1" * 64
FILES = {"/src/b.py": b"b\n", "/src/a.py": b"a\n"}  # two overlaid files, listed unsorted
TEMPLATE = "{{ messages }}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_lock(
    fingerprint: str,
    files: dict[str, bytes] | None = None,
    template: str | None = None,
    **changes: Any,
) -> Lock:
    body: dict[str, Any] = {
        "generated_by": "patchkeeper tests",
        "recipe": "demo",
        "service": "sglang",
        "fingerprint": fingerprint,
        "image": {
            "ref": "example/sglang:nightly",
            "digest": "sha256:" + "1" * 64,
            "id": "sha256:" + "2" * 64,
            "pinned": PINNED,
            "commit": "3" * 40,
            "source": "registry",
        },
        "patchsets": [],
        "patches": [],
        "files": [
            {"path": path, "vanilla_sha256": None, "patched_sha256": sha(data), "mode": 0o644}
            for path, data in (files or {}).items()
        ],
        "chat_template": None
        if template is None
        else {
            "container_path": "/patchkeeper/chat_template.jinja",
            "sha256": sha(template.encode()),
        },
        "warnings": [],
    }
    body.update(changes)
    return Lock.model_validate(body)
