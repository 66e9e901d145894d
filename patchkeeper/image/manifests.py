"""Manifest and index shapes shared by the registry and layout sources."""

from __future__ import annotations

from typing import Any

from patchkeeper.errors import ImageError

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}


def is_index(body: dict[str, Any], media_type: str = "") -> bool:
    return media_type in INDEX_TYPES or body.get("mediaType") in INDEX_TYPES or "manifests" in body


def choose_platform(index: dict[str, Any], platform: str, where: str) -> str:
    """The manifest digest for `os/arch[/variant]` in an index."""
    wanted = platform.split("/")
    for entry in index.get("manifests", []):
        p = entry.get("platform", {})
        have = [p.get("os"), p.get("architecture")] + ([p["variant"]] if "variant" in p else [])
        if have[: len(wanted)] == wanted:
            return str(entry["digest"])
    available = sorted(
        "/".join(
            filter(
                None, [e.get("platform", {}).get("os"), e.get("platform", {}).get("architecture")]
            )
        )
        for e in index.get("manifests", [])
    )
    raise ImageError(f"{where}: no {platform} image in the index (has {', '.join(available)})")
