"""Small, valid locks and overlays for overlay tests (what `sync` writes, minus the porting)."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.write import OverlayContent, write_overlay

PINNED = "example/sglang@sha256:" + "1" * 64
FILES = {"/src/b.py": b"b\n", "/src/a.py": b"a\n"}  # two overlaid files, listed unsorted
TEMPLATE = "{{ messages }}"
BASE = "name: nightly-demo\nservices: {sglang: {image: example/sglang:nightly}}\n"


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


def overlay_content(image: str, pin: bool) -> OverlayContent:
    """The overlaid `FILES` and compose files a user could run by hand (`docker compose
    -f latest/compose.yaml -f latest/compose.override.yaml up`); `pin`: the override
    pins `PINNED` as sync's does, else the base's `image` runs."""
    base = (
        f"name: demo\nservices:\n  sglang:\n    image: {image}\n    command: [/bin/sleep, '3600']\n"
    )

    def override(root: str) -> str:
        volumes = ", ".join(f"'{root}rootfs{path}:{path}:ro'" for path in sorted(FILES))
        pinned = f"    image: {PINNED}\n" if pin else ""
        return f"services:\n  sglang:\n{pinned}    volumes: [{volumes}]\n"

    files = {PurePosixPath(path): (data, 0o644) for path, data in FILES.items()}
    return OverlayContent(files, {}, None, base, override)


def overlay(
    out: Path, template: str | None = TEMPLATE, base: str = BASE, recipe: str = "demo"
) -> Path:
    """A real overlay in `out`'s store, as sync writes it."""
    lock = make_lock("", FILES, template, recipe=recipe)
    content = OverlayContent(
        {PurePosixPath(p): (data, 0o644) for p, data in FILES.items()},
        {},
        template,
        base,
        lambda root: f"services: {{sglang: {{image: '{PINNED}'}}}}\n",
    )
    return write_overlay(out, recipe, "nightly-1", lock, content)[0]
