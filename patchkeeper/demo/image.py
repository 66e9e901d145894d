"""Build small nightly-shaped images in a Docker Engine, with no registry or network."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DOCKERFILE = 'FROM {base}\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n'


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def build_context(
    trees: Mapping[str, Path], files: Mapping[str, bytes], with_busybox: bool, base: str
) -> bytes:
    """A docker build context: `trees` copies host directories to image paths, on `base`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", DOCKERFILE.format(base=base).encode())
        for target, source in trees.items():
            tar.add(source, arcname=f"rootfs/{target.lstrip('/')}")
        for target, data in files.items():
            _add(tar, f"rootfs/{target.lstrip('/')}", data)
        if with_busybox:
            busybox = shutil.which("busybox")
            if busybox is None:
                raise RuntimeError("busybox (Debian busybox-static) is needed to run the image")
            _add(tar, "rootfs/bin/busybox", Path(busybox).read_bytes(), 0o755)
            for applet in ("sh", "sha256sum", "cat", "sleep", "wget", "ls", "test"):
                info = tarfile.TarInfo(f"rootfs/bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return buffer.getvalue()


def build_image(
    client: Any,
    reference: str,
    trees: Mapping[str, Path],
    files: Mapping[str, bytes] | None = None,
    labels: Mapping[str, str] | None = None,
    with_busybox: bool = True,
    base: str = "scratch",
) -> str:
    """Build `reference` from the given trees and files (on `base`); return its image id."""
    context = build_context(trees, files or {}, with_busybox, base)
    image, _ = client.images.build(
        fileobj=io.BytesIO(context),
        custom_context=True,
        tag=reference,
        labels=dict(labels or {}),
        rm=True,
        forcerm=True,
        network_mode="none",
    )
    return str(image.id)
