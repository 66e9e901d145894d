"""The one way layer bytes are read: counted, hashed against the digest, capped.

Every layer stream goes through `CountingReader` (compressed bytes: never past the
declared size, hashed as they arrive, `verify()` at the end proves the blob is the one
its digest names) and `tar_stream` (compression sniffed from the bytes, never taken
from a media type; decompressed bytes refused past a cap, so a small bomb cannot fill
memory or disk).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import zstandard

from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image import digests


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class LayerBlob:
    """One layer as a source offers it: `open()` streams its (compressed) bytes."""

    digest: str
    size: int
    media_type: str
    open: Callable[[], contextlib.AbstractContextManager[Readable]]


@dataclass
class LayerStats:
    digest: str
    size: int
    fetched: int = 0
    streams: int = 0


class Abandoned(Exception):
    """A layer stream cancelled because a layer above settled everything."""


class CountingReader(io.RawIOBase):
    """The compressed bytes pulled from the source: counted, hashed, never past `size`."""

    def __init__(
        self,
        inner: Readable,
        blob: LayerBlob,
        stats: LayerStats,
        tick: Callable[[int], None],
        cancel: threading.Event,
    ) -> None:
        self.inner, self.blob, self.stats, self.tick, self.cancel = (
            inner,
            blob,
            stats,
            tick,
            cancel,
        )
        self.hash = digests.hasher(blob.digest)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.cancel.is_set():
            raise Abandoned
        room = len(buffer)
        if self.blob.size:
            room = min(room, self.blob.size + 1 - self.read_bytes)
        data = self.inner.read(room) if room > 0 else b""
        size = len(data)
        buffer[:size] = data
        self.read_bytes += size
        self.stats.fetched += size
        self.hash.update(data)
        self.tick(size)
        if self.blob.size and self.read_bytes > self.blob.size:
            raise ImageError(
                f"layer {self.blob.digest}: more bytes than its declared size {self.blob.size}"
            )
        return size

    def verify(self) -> None:
        """The whole blob was read: it must be the one its digest names."""
        while self.read(1 << 16):
            pass
        actual = f"{self.blob.digest.split(':', 1)[0]}:{self.hash.hexdigest()}"
        if actual != self.blob.digest:
            raise ImageError(f"layer {self.blob.digest}: content does not match (got {actual})")
        if self.blob.size and self.read_bytes != self.blob.size:
            raise ImageError(
                f"layer {self.blob.digest}: {self.read_bytes} bytes, declared {self.blob.size}"
            )


class CappedReader(io.RawIOBase):
    """Decompressed bytes, refused past `limit` (a decompression bomb)."""

    def __init__(self, inner: IO[bytes], limit: int, digest: str) -> None:
        self.inner, self.limit, self.digest, self.count = inner, limit, digest, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise UnsafeInputError(
                f"layer {self.digest}: decompresses past {self.limit} bytes; refusing"
            )
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def tar_stream(raw: io.RawIOBase, limit: int, digest: str) -> Iterator[tarfile.TarFile]:
    """A streaming tar reader over gzip, zstd or plain layers (sniffed, not trusted)."""
    buffered = io.BufferedReader(raw, 1 << 16)
    magic = buffered.peek(4)[:4]
    stream: IO[bytes]
    if magic[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
    elif magic == b"\x28\xb5\x2f\xfd":
        stream = zstandard.ZstdDecompressor().stream_reader(buffered)
    else:
        stream = buffered
    capped = io.BufferedReader(CappedReader(stream, limit, digest), 1 << 16)
    with tarfile.open(fileobj=capped, mode="r|") as tar:
        yield tar
