"""Find files in an image by streaming its layers from the top down, without a daemon.

Only the requested paths are extracted; everything else is skipped as it
streams past. A layer is abandoned (its download closed) as soon as every
requested path is settled, so files in upper layers cost only those layers.
A file of a git checkout that is absent from the layer holding the checkout's
`.git/HEAD` (and from every layer above it) is absent, so lookups stop there.
Whiteouts (`.wh.<name>`) and opaque directories (`.wh..wh..opq`) hide lower
layers as the OCI image spec says. Entries are untrusted: names that climb out
of the root are refused, symlinks are followed inside the image only, and
device files, FIFOs and oversized files are never read.

What a layer was seen to hold is cached under its digest (names always,
contents for requested files), so reading the same layers again fetches
nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import zstandard

from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage
from patchkeeper.image.paths import MAX_FILE_BYTES, MAX_SYMLINK_HOPS, follow_link
from patchkeeper.paths import atomic_write, cache_dir

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ROOT = PurePosixPath("/")


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


@dataclass
class _Seen:
    """What one layer says about paths: kind per name, plus file content digests."""

    names: dict[str, list[Any]] = field(default_factory=dict)  # path -> [kind, mode, link]
    contents: dict[str, str] = field(default_factory=dict)  # path -> sha256 of content
    complete: bool = False


class LayerCache:
    """Per-layer name index and file contents, keyed by digests (layers never change)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "layers").mkdir(parents=True, exist_ok=True)
        (root / "contents").mkdir(parents=True, exist_ok=True)

    def _index(self, digest: str) -> Path:
        return self.root / "layers" / f"{digest.replace(':', '-')}.json"

    def load(self, digest: str) -> _Seen:
        try:
            data = json.loads(self._index(digest).read_text())
            return _Seen(data["names"], data["contents"], data["complete"])
        except (OSError, ValueError, KeyError):
            return _Seen()

    def save(self, digest: str, seen: _Seen) -> None:
        payload = {"names": seen.names, "contents": seen.contents, "complete": seen.complete}
        atomic_write(self._index(digest), json.dumps(payload).encode())

    def content(self, sha256: str) -> bytes | None:
        try:
            data = (self.root / "contents" / sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def put_content(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / "contents" / digest
        if not target.exists():
            atomic_write(target, data)
        return digest


class _Counting(io.RawIOBase):
    """Counts the compressed bytes actually pulled from the source."""

    def __init__(self, inner: Readable, stats: LayerStats, tick: Callable[[int], None]) -> None:
        self.inner, self.stats, self.tick = inner, stats, tick

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.stats.fetched += size
        self.tick(size)
        return size


@contextlib.contextmanager
def _tar_stream(raw: io.RawIOBase) -> Iterator[tarfile.TarFile]:
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
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        yield tar


def _member_path(name: str, layer: str) -> str:
    """A member name as an absolute image path; names that climb out are refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or name.startswith("/"):
        raise UnsafeInputError(f"layer {layer}: refusing entry {name!r} (escapes the image root)")
    return "/" + "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isdir():
        return "dir"
    return "special"


@dataclass
class _Answer:
    """How a layer settles a lookup: found something, hid it, or redirected it."""

    kind: str  # file | symlink | hardlink | dir | special | absent | redirect
    path: str
    content: bytes | None = None
    mode: int = 0o644
    link: str = ""


def _ancestors(path: str) -> list[str]:
    return [str(p) for p in PurePosixPath(path).parents if str(p) != "/"]


def _settle(seen: _Seen, path: str) -> _Answer | bool | None:
    """What this layer says about `path`: an answer, None (passes through), False (unknown)."""
    for ancestor in reversed(_ancestors(path)):  # outermost first: /a before /a/b
        entry = seen.names.get(ancestor)
        parent, name = ancestor.rsplit("/", 1)
        if f"{parent}/{WHITEOUT}{name}" in seen.names:
            return _Answer("absent", path)
        if entry and entry[0] == "symlink":
            rest = PurePosixPath(path).relative_to(ancestor)
            return _Answer("redirect", str(follow_link(PurePosixPath(ancestor), entry[2]) / rest))
        if entry and entry[0] != "dir":
            return _Answer("absent", path)
    entry = seen.names.get(path)
    if entry:
        kind, mode, link = entry
        return _Answer(kind, path, None, mode, link)
    parent, name = path.rsplit("/", 1)
    if f"{parent}/{WHITEOUT}{name}" in seen.names:
        return _Answer("absent", path)
    if seen.complete:
        return None
    return False


def _deciders(path: str) -> set[str]:
    """Member names whose appearance can settle `path` (the only ones worth re-checking on)."""
    names = {path}
    for candidate in [path, *_ancestors(path)]:
        parent, name = candidate.rsplit("/", 1)
        names |= {candidate, f"{parent}/{WHITEOUT}{name}"}
    return names


def _hidden_below(seen: _Seen, path: str) -> bool:
    """An opaque directory in this layer hides `path` in every lower layer."""
    return any(f"{a}/{OPAQUE}" in seen.names for a in _ancestors(path))


def _below_checkout(seen: _Seen, path: str) -> bool:
    """This layer created the git work tree `path` would live in, so nothing lower has it.

    `git clone` refuses a non-empty target, so a checkout arrives whole in one
    layer: a file of the tree absent from that layer and every upper one is
    absent from the image, and the large base layers need not be read.
    """
    return any(f"{a}/.git/HEAD" in seen.names for a in _ancestors(path))


class LayerReader:
    """Resolves image paths against layers listed bottom-first (as manifests list them)."""

    def __init__(
        self,
        layers: Sequence[LayerBlob],
        cache: LayerCache,
        on_layer: Callable[[LayerBlob], Callable[[int], None]] | None = None,
    ) -> None:
        self.layers = list(reversed(layers))  # top first
        self.cache = cache
        self.on_layer = on_layer or (lambda _blob: lambda _n: None)
        self.stats = {blob.digest: LayerStats(blob.digest, blob.size) for blob in layers}

    def read(self, paths: Sequence[PurePosixPath]) -> dict[PurePosixPath, ImageFile | None]:
        results: dict[PurePosixPath, ImageFile | None] = {}
        lookups = {p: str(p) for p in paths}
        for _ in range(MAX_SYMLINK_HOPS):
            if not lookups:
                return results
            answers = self._find(set(lookups.values()))
            next_round = {}
            for requested, current in lookups.items():
                answer = answers[current]
                if answer.kind == "file":
                    assert answer.content is not None
                    resolved = PurePosixPath(current)
                    results[requested] = ImageFile(requested, answer.content, answer.mode, resolved)
                elif answer.kind == "absent":
                    results[requested] = None
                elif answer.kind == "symlink":
                    next_round[requested] = str(follow_link(PurePosixPath(current), answer.link))
                elif answer.kind == "hardlink":
                    next_round[requested] = _member_path(answer.link, "hardlink")
                elif answer.kind == "redirect":
                    next_round[requested] = answer.path
                elif answer.kind == "dir":
                    raise UnsafeInputError(f"image path {requested} is a directory in the image")
                else:
                    raise UnsafeInputError(f"image path {requested} is a device file or FIFO")
            lookups = next_round
        raise UnsafeInputError(f"image paths {sorted(lookups)}: more than {MAX_SYMLINK_HOPS} hops")

    def _find(self, paths: set[str]) -> dict[str, _Answer]:
        answers: dict[str, _Answer] = {}
        open_paths = set(paths)
        for blob in self.layers:
            if not open_paths:
                break
            seen = self.cache.load(blob.digest)
            settled = {p: _settle(seen, p) for p in open_paths}
            known = sum(1 for a in settled.values() if a is not False)
            log.debug("layer %s: cache settles %d of %d path(s)", blob.digest, known, len(settled))
            needs_content = [
                p
                for p, a in settled.items()
                if isinstance(a, _Answer)
                and a.kind == "file"
                and self.cache.content(seen.contents.get(p, "")) is None
            ]
            if any(a is False for a in settled.values()) or needs_content:
                seen = self._scan(blob, seen, open_paths)
                settled = {p: _settle(seen, p) for p in open_paths}
            for path, answer in settled.items():
                if isinstance(answer, _Answer):
                    if answer.kind == "file":
                        answer.content = self.cache.content(seen.contents[path])
                    answers[path] = answer
                elif _hidden_below(seen, path) or _below_checkout(seen, path):
                    answers[path] = _Answer("absent", path)
            open_paths -= set(answers)
        for path in open_paths:
            answers[path] = _Answer("absent", path)
        return answers

    def _scan(self, blob: LayerBlob, seen: _Seen, wanted: set[str]) -> _Seen:
        """Stream `blob` until every wanted path is settled by it or the layer ends."""
        stats = self.stats[blob.digest]
        tick = self.on_layer(blob)
        fresh = _Seen()
        relevant = set().union(*(_deciders(p) for p in wanted))
        try:
            with blob.open() as raw, _tar_stream(_Counting(raw, stats, tick)) as tar:
                for member in tar:
                    path = _member_path(member.name, blob.digest)
                    kind = _kind(member)
                    link = member.linkname if kind in ("symlink", "hardlink") else ""
                    fresh.names[path] = [kind, member.mode & 0o7777, link]
                    if kind == "file" and path in wanted:
                        if member.size > MAX_FILE_BYTES:
                            raise UnsafeInputError(
                                f"image path {path}: {member.size} bytes, over the limit"
                            )
                        handle = tar.extractfile(member)
                        assert handle is not None
                        fresh.contents[path] = self.cache.put_content(handle.read())
                    if path in relevant and all(
                        isinstance(_settle(fresh, p), _Answer) for p in wanted
                    ):
                        break
                else:
                    fresh.complete = True
        except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as err:
            raise ImageError(f"layer {blob.digest}: unreadable: {err}") from None
        merged = _Seen({**seen.names, **fresh.names}, {**seen.contents, **fresh.contents})
        merged.complete = seen.complete or fresh.complete
        self.cache.save(blob.digest, merged)
        return merged


def read_config(data: bytes, digest: str, where: str) -> dict[str, Any]:
    """An image config blob, checked against its digest."""
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"{where}: config blob does not match its digest {digest}")
    try:
        config = json.loads(data)
    except ValueError:
        raise ImageError(f"{where}: config blob is not JSON") from None
    if not isinstance(config, dict):
        raise ImageError(f"{where}: malformed config blob (not a JSON object)")
    inner = config.get("config") or {}
    if not isinstance(inner, dict) or not isinstance(inner.get("Labels") or {}, dict):
        raise ImageError(f"{where}: malformed config blob ('config.Labels' is not an object)")
    if not isinstance(config.get("created", ""), str | None):
        raise ImageError(f"{where}: malformed config blob ('created' is not a string)")
    return config


class LayeredSource:
    """What registry and layout sources share: resolved layer lists and the layer reader."""

    name = "layers"

    def __init__(self, progress: Any = None) -> None:
        self.progress = progress
        self.cache = LayerCache(cache_dir() / "layers")
        self.layer_stats: dict[str, LayerStats] = {}
        self._layers: dict[str, list[LayerBlob]] = {}

    def register(
        self,
        ref: ImageRef,
        image_id: str,
        digest: str | None,
        config: dict[str, Any],
        layers: list[LayerBlob],
    ) -> ResolvedImage:
        self._layers[image_id] = layers
        for blob in layers:
            self.layer_stats.setdefault(blob.digest, LayerStats(blob.digest, blob.size))
        return ResolvedImage(
            ref=ref,
            image_id=image_id,
            digest=digest,
            labels=dict((config.get("config") or {}).get("Labels") or {}),
            created=config.get("created"),
        )

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        raise NotImplementedError

    def read(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, ImageFile | None]:
        if image.image_id not in self._layers:
            self.resolve(image.ref)
        reader = LayerReader(self._layers[image.image_id], self.cache, self._progress_for)
        try:
            return reader.read(paths)
        finally:
            for digest, stats in reader.stats.items():
                self.layer_stats[digest].fetched += stats.fetched

    def accounting(self) -> dict[str, Any]:
        layers = [
            {"digest": s.digest, "size": s.size, "fetched": s.fetched}
            for s in self.layer_stats.values()
        ]
        return {
            "source": self.name,
            "fetched_bytes": sum(layer["fetched"] for layer in layers),
            "image_bytes": sum(layer["size"] for layer in layers),
            "layers": layers,
        }

    def _progress_for(self, blob: LayerBlob) -> Callable[[int], None]:
        if self.progress is None:
            return lambda _n: None
        task = self.progress.add_task(f"layer {blob.digest[7:19]}", total=blob.size or None)
        return lambda n: self.progress.advance(task, n)
