"""A registry blob read in growing Range requests, so stopping early wastes little."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from patchkeeper.errors import ImageError, UnreachableError

if TYPE_CHECKING:
    from patchkeeper.image.registry_client import RegistryClient

FIRST_RANGE = 256 << 10
MAX_RANGE = 16 << 20


class RangedReader(io.RawIOBase):
    """A blob's bytes in Range requests growing from 256 KiB to 16 MiB, held to a deadline.

    A reader that stops early then leaves at most one range in flight, where one whole
    GET would leave whatever the sockets buffered (megabytes on a fast link). A registry
    that ignores Range (200) streams the whole blob in one response instead.
    """

    def __init__(
        self, client: RegistryClient, url: str, scope: str, size: int, ends_at: float
    ) -> None:
        self._client, self._url, self._scope, self._size = client, url, scope, size
        self._ends_at = ends_at
        self._offset, self._span, self._whole = 0, FIRST_RANGE, False
        self._opened_at = 0
        self._pace = client.deadlines.low_speed.pace()
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        super().close()

    def _open_next(self) -> bool:
        """The next range (or the whole blob); False once everything was read."""
        if self._response is not None:
            self._response.close()
        if self._whole or (self._size and self._offset >= self._size):
            return False
        headers = {}
        if self._size:
            end = min(self._offset + self._span, self._size) - 1
            headers["Range"] = f"bytes={self._offset}-{end}"
            self._span = min(2 * self._span, MAX_RANGE)
        response = self._client.request("GET", self._url, self._scope, headers)
        self._response = response
        where = f"registry {self._client.registry}: {self._url}"
        if response.status_code == 200 and self._offset == 0:
            self._whole = True
        elif response.status_code != 206 or not response.headers.get(
            "Content-Range", ""
        ).startswith(f"bytes {self._offset}-"):
            raise ImageError(f"{where}: bad reply to a range request (HTTP {response.status_code})")
        self._chunks = self._client.paced(response.iter_raw(), self._url, self._pace)
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            self._client.check_deadline(self._url, self._ends_at, "request deadline")
            try:
                chunk = next(self._chunks, b"")
            except httpx.HTTPError as err:
                raise UnreachableError(
                    f"registry {self._client.registry}: {self._url}: {err}"
                ) from None
            if chunk:
                break
            if self._response is not None and self._offset == self._opened_at:
                raise ImageError(f"registry {self._client.registry}: {self._url}: empty reply")
            if not self._open_next():
                return 0
            self._opened_at = self._offset
        size = min(len(buffer), len(chunk))
        buffer[:size] = chunk[:size]
        self._offset += size
        if size < len(chunk):
            rest = chunk[size:]
            self._chunks = itertools.chain([rest], self._chunks)
        return size
