"""Manifest and index shapes shared by the registry and layout sources."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from patchkeeper.errors import ImageError
from patchkeeper.image.digests import is_sha256

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int
    media_type: str


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    """A manifest or index document: JSON, and an object (registries are untrusted)."""
    try:
        body = json.loads(data)
    except ValueError as err:
        raise ImageError(f"{where}: malformed manifest (not JSON: {err})") from None
    if not isinstance(body, dict):
        raise ImageError(f"{where}: malformed manifest (not a JSON object)")
    return body


def _descriptor(value: Any, where: str, field: str) -> Descriptor:
    if not isinstance(value, dict) or not is_sha256(value.get("digest")):
        raise ImageError(f"{where}: malformed manifest: {field} has no sha256 digest")
    size = value.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{where}: malformed manifest: {field} has size {size!r}")
    return Descriptor(value["digest"], size, str(value.get("mediaType", "")))


def image_parts(body: dict[str, Any], where: str) -> tuple[Descriptor, list[Descriptor]]:
    """(config, layers) of an image manifest, each shape-checked."""
    layers = body.get("layers", [])
    if not isinstance(layers, list):
        raise ImageError(f"{where}: malformed manifest: 'layers' is not a list")
    return _descriptor(body.get("config"), where, "config"), [
        _descriptor(layer, where, f"layers[{n}]") for n, layer in enumerate(layers)
    ]


def is_index(body: dict[str, Any], media_type: str = "") -> bool:
    return media_type in INDEX_TYPES or body.get("mediaType") in INDEX_TYPES or "manifests" in body


# As containerd's platforms.Normalize: other spellings of one architecture, and the
# variants that are the architecture's default (arm64 means v8, amd64 v1).
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}
_DEFAULT_VARIANT = {"arm64": "v8", "amd64": "v1"}


def normalize_platform(os_name: str, arch: str, variant: str = "") -> tuple[str, str, str]:
    arch = _ARCH_ALIASES.get(arch, arch)
    if variant == _DEFAULT_VARIANT.get(arch):
        variant = ""
    return os_name, arch, variant


def _platform(entry: dict[str, Any], where: str, number: int) -> tuple[str, str, str]:
    """An index entry's (os, architecture, variant), normalized; each a string if present."""
    given = entry.get("platform") or {}
    fields = ("os", "architecture", "variant")
    if not isinstance(given, dict) or not all(isinstance(given.get(f, ""), str) for f in fields):
        raise ImageError(
            f"{where}: malformed index: manifests[{number}].platform is not os/arch strings"
        )
    return normalize_platform(*(given.get(f, "") for f in fields))


def choose_platform(index: dict[str, Any], platform: str, where: str) -> str:
    """The manifest digest for `os/arch[/variant]` in an index (`linux/arm64/v8` is
    `linux/arm64`); without a variant, any variant of that arch matches."""
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ImageError(f"--platform {platform!r}: expected os/arch or os/arch/variant")
    wanted = normalize_platform(*parts)
    entries = index.get("manifests", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError(f"{where}: malformed index: 'manifests' is not a list of objects")
    platforms = [_platform(entry, where, n) for n, entry in enumerate(entries)]
    for entry, have in zip(entries, platforms, strict=True):
        if have[:2] == wanted[:2] and wanted[2] in ("", have[2]):
            return _descriptor(entry, where, "index entry").digest
    available = sorted("/".join(filter(None, have[:2])) for have in platforms)
    raise ImageError(f"{where}: no {platform} image in the index (has {', '.join(available)})")
