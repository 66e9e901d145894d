"""Path rules for untrusted image content: everything stays inside the image root."""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_SYMLINK_HOPS = 40


def follow_link(link: PurePosixPath, target: str) -> PurePosixPath:
    """Resolve a symlink target as the kernel would inside a chroot at the image root.

    `..` never climbs above `/`, absolute targets restart at the image root, so
    no target can point at a host path.
    """
    base = "/" if target.startswith("/") else str(link.parent)
    joined = posixpath.normpath(posixpath.join("/", base, target))
    return PurePosixPath("/" + joined.lstrip("/"))
