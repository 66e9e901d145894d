"""Content digests (`algorithm:hex`), validated before any use as a name or a check."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from patchkeeper.errors import ImageError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"(?P<algorithm>sha256|sha512):(?P<hex>[0-9a-f]+)")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def is_sha256(value: Any) -> bool:
    """`value` is exactly `sha256:<64 lowercase hex>`: nothing before or after (not even a
    newline), so it is safe as a file name and in a URL."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def checked(value: Any, where: str) -> str:
    """`value` if it is a digest patchkeeper can verify (sha256/sha512, lowercase hex)."""
    match = _DIGEST.fullmatch(value) if isinstance(value, str) else None
    if not match or len(match["hex"]) != _HEX_LENGTH[match["algorithm"]]:
        raise ImageError(f"{where}: malformed or unsupported digest {str(value)[:100]!r}")
    return str(value)


def hasher(digest: str) -> Any:
    """A fresh hash object for the algorithm `digest` names (already `checked`)."""
    return hashlib.new(digest.split(":", 1)[0])


def file_name(digest: str) -> str:
    """A checked digest as a file name: `sha256-<hex>`."""
    return digest.replace(":", "-", 1)


def of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
