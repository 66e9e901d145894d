"""Find files in an image by streaming its layers from the top down, without a daemon.

One request settles everything: exact paths (the files a sync touches) and git
directories whose small metadata (HEAD, refs/, packed-refs, shallow, commondir, gitdir)
is wanted whole. Each layer is streamed once (a second time, up to the target, only for
a hardlink whose target the first pass did not capture), up to three at a time as
`docker pull` does, and abandoned as soon as its entries sort past the last thing wanted, with the
order checked entry by entry (see `order`); a layer whose entries break every known
order is read in full. Descent stops once every request is settled: a file of a
git checkout absent from the layer that created the checkout (and every layer above
it) is absent, so the large base layers are never read.

Within a layer, entries apply in sequence as the engine applies them: a later entry
replaces an earlier one, a whiteout deletes what this layer made so far and hides lower
layers, an opaque marker hides lower layers only. Hardlinks read their target's bytes
from the layer that holds the link. Entries are untrusted: names that climb out of the
root are refused, symlinks are followed inside the image only, device files, FIFOs and
oversized files are never read, and decompression stops at a cap.

A layer read to its end is verified against its digest and size (a mismatch is bad
input, and nothing of it is kept). What a verified layer holds is cached under its
digest for every source; what a partly read layer showed cannot be verified, so it is
cached only under the scope it came from (a registry and a verified manifest digest)
and layouts keep none.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol, cast

import zstandard

from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image import digests, order
from patchkeeper.image.model import ImageFile, ImageRef, PathKind, ResolvedImage, printable
from patchkeeper.image.paths import MAX_FILE_BYTES, MAX_SYMLINK_HOPS, follow_link
from patchkeeper.paths import atomic_write, cache_dir, directory

log = logging.getLogger("patchkeeper.image")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
GIT_FILES = ("HEAD", "packed-refs", "shallow", "commondir", "gitdir")
PARALLEL_LAYERS = 3
MIN_EXPANSION_CAP = 1 << 30
EXPANSION_RATIO = 100  # decompressed bytes per compressed byte, beyond any real layer


def is_git_metadata(git_dir: str, path: str) -> bool:
    """The small files of `git_dir` that name commits (never objects/, index, hooks)."""
    if not path.startswith(git_dir + "/"):
        return False
    rest = path[len(git_dir) + 1 :]
    return rest in GIT_FILES or rest.startswith("refs/")


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


@dataclass
class Record:
    """What one layer was seen to say: the entries it applies, and how far it was read.

    `names` maps a path to [kind, mode, link]; `hidden` are whiteout targets, `opaque`
    directories whose lower content is hidden, `contents` sha256 of captured files.
    A partly read record stopped at entry `stop` while keeping `orders`; an `unordered`
    one was read in full and followed no order, so no later pass may stop early on it.
    """

    names: dict[str, list[Any]] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)
    contents: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    stop: str | None = None
    orders: list[str] = field(default_factory=list)
    unordered: bool = False
    parents: set[str] = field(default_factory=set)  # while streaming only

    def decides(self, item: dict[str, Any]) -> bool:
        return self.complete or (
            self.stop is not None and order.decided(self.stop, self.orders, item)
        )

    def drop(self, path: str) -> None:
        """Remove `path` and what this layer put below it (a replace or a whiteout)."""
        if path not in self.names and path not in self.parents:
            return
        below = path + "/"
        for name in [n for n in self.names if n == path or n.startswith(below)]:
            del self.names[name]
            self.contents.pop(name, None)

    def add(self, path: str, kind: str, mode: int, link: str) -> None:
        previous = self.names.get(path)
        if not (kind == "dir" and previous and previous[0] == "dir"):
            self.drop(path)
        self.names[path] = [kind, mode, link]
        self.parents.update(_ancestors(path))

    def dump(self) -> bytes:
        return json.dumps(
            {
                "names": self.names,
                "hidden": sorted(self.hidden),
                "opaque": sorted(self.opaque),
                "contents": self.contents,
                "complete": self.complete,
                "stop": self.stop,
                "orders": self.orders,
                "unordered": self.unordered,
            }
        ).encode()

    @classmethod
    def load(cls, data: bytes) -> Record:
        raw = json.loads(data)
        return cls(
            dict(raw["names"]),
            set(raw["hidden"]),
            set(raw["opaque"]),
            dict(raw["contents"]),
            bool(raw["complete"]),
            raw["stop"],
            list(raw["orders"]),
            bool(raw.get("unordered", False)),  # absent from records of earlier versions
        )


class LayerCache:
    """Layer records and file contents on disk.

    Verified (fully read, digest checked) records live under `verified/` for every
    source; partial ones under `partial/<scope>/`, only for the scope that read them.
    Contents are addressed by their own sha256 and re-checked on every load.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in ("verified", "partial", "contents"):
            directory(root / folder, "layer cache directory")

    def _record_path(self, digest: str, scope: str | None) -> Path:
        name = f"{digests.file_name(digest)}.json"
        if scope is None:
            return self.root / "verified" / name
        folder = self.root / "partial" / hashlib.sha256(scope.encode()).hexdigest()
        folder.mkdir(exist_ok=True)
        return folder / name

    def load(self, digest: str, scope: str | None) -> Record | None:
        for where in (None, scope) if scope else (None,):
            try:
                return Record.load(self._record_path(digest, where).read_bytes())
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    def save(self, digest: str, record: Record, scope: str | None) -> None:
        if record.complete:
            atomic_write(self._record_path(digest, None), record.dump())
        elif scope is not None:
            atomic_write(self._record_path(digest, scope), record.dump())

    def content(self, sha256: str) -> bytes | None:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            return None
        try:
            data = (self.root / "contents" / sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def put_content(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / "contents" / digest
        if self.content(digest) is None:  # absent, or damaged: a re-read must repair it
            atomic_write(target, data)
        return digest


class _Abandoned(Exception):
    """A layer stream cancelled because a layer above settled everything."""


class _Counting(io.RawIOBase):
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
            raise _Abandoned
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


class _Capped(io.RawIOBase):
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
def _tar_stream(raw: io.RawIOBase, limit: int, digest: str) -> Iterator[tarfile.TarFile]:
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
    capped = io.BufferedReader(_Capped(stream, limit, digest), 1 << 16)
    with tarfile.open(fileobj=capped, mode="r|") as tar:
        yield tar


def _member_path(name: str, layer: str) -> str:
    """A member name as an absolute image path; absolute or climbing names are refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
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


def _ancestors(path: str) -> list[str]:
    """Strict ancestors, innermost first, without `/`."""
    return [str(p) for p in PurePosixPath(path).parents if str(p) != "/"]


@dataclass
class _Answer:
    """How a layer settles a lookup: found something, hid it, or redirected it."""

    kind: str  # file | symlink | hardlink | dir | special | absent | redirect
    path: str
    content: bytes | None = None
    mode: int = 0o644
    link: str = ""


def _lookup(record: Record, path: str) -> _Answer | None:
    """What this layer says about `path`: an answer, or None (lower layers decide)."""
    for ancestor in reversed(_ancestors(path)):  # outermost first: /a before /a/b
        entry = record.names.get(ancestor)
        if entry and entry[0] == "symlink":
            rest = PurePosixPath(path).relative_to(ancestor)
            return _Answer("redirect", str(follow_link(PurePosixPath(ancestor), entry[2]) / rest))
        if entry and entry[0] != "dir":
            return _Answer("absent", path)
    entry = record.names.get(path)
    if entry:
        kind, mode, link = entry
        return _Answer(kind, path, None, mode, link)
    if _hides_below(record, path):
        return _Answer("absent", path)
    return None


def _hides_below(record: Record, path: str) -> bool:
    """A whiteout of `path` or an ancestor, or an opaque ancestor, hides lower layers."""
    ancestors = _ancestors(path)
    return any(p in record.hidden for p in [path, *ancestors]) or any(
        a in record.opaque for a in ancestors
    )


def _below_checkout(record: Record, path: str) -> bool:
    """This layer created the git work tree `path` would live in, so nothing lower has it.

    `git clone` refuses a non-empty target, so a checkout arrives whole in one
    layer: a file of the tree absent from that layer and every upper one is
    absent from the image, and the large base layers need not be read.
    """
    return any(
        f"{a}/.git/HEAD" in record.names or (record.names.get(f"{a}/.git") or [""])[0] == "file"
        for a in _ancestors(path)
    )


def _git_dir_settled(record: Record, git_dir: str) -> bool:
    """Lower layers can add nothing to `git_dir` once this layer made (`HEAD`) or hid it."""
    return _lookup(record, f"{git_dir}/HEAD") is not None


@dataclass(frozen=True)
class _Wanted:
    """What one streaming pass captures, and how far a layer must be read for it."""

    paths: frozenset[str]
    git_dirs: frozenset[str]

    def bounds(self) -> dict[str, Any]:
        items = [order.bound(p, False) for p in self.paths]
        items += [order.bound(g, True) for g in self.git_dirs]
        return order.highest(items)

    def captures(self, path: str) -> bool:
        return path in self.paths or any(
            path == g or is_git_metadata(g, path) for g in self.git_dirs
        )


class LayerReader:
    """Resolves image paths against layers listed bottom-first (as manifests list them)."""

    def __init__(
        self,
        layers: Sequence[LayerBlob],
        cache: LayerCache,
        scope: str | None,
        records: dict[str, Record],
        stats: dict[str, LayerStats],
        on_layer: Callable[[LayerBlob], Callable[[int], None]] | None = None,
    ) -> None:
        self.layers = list(reversed(layers))  # top first
        self.cache, self.scope, self.records, self.stats = cache, scope, records, stats
        self.on_layer = on_layer or (lambda _blob: lambda _n: None)

    def read(
        self, paths: Sequence[PurePosixPath], git_dirs: Sequence[PurePosixPath] = ()
    ) -> dict[PurePosixPath, ImageFile | None]:
        """Requested files (None: absent), plus every metadata file of each git dir."""
        wanted_dirs = {str(g) for g in git_dirs}
        candidates = self._settle({str(p) for p in paths}, wanted_dirs)
        results = self._resolve(list(paths), strict=True)
        extra = [PurePosixPath(p) for p in sorted(candidates)]
        found = self._resolve(extra, strict=False)
        results.update({p: f for p, f in found.items() if f is not None and p not in results})
        return results

    def _resolve(
        self, paths: Sequence[PurePosixPath], strict: bool
    ) -> dict[PurePosixPath, ImageFile | None]:
        """Follow symlinks and hardlinks; `strict` refuses directories and devices."""
        results: dict[PurePosixPath, ImageFile | None] = {}
        lookups = {p: str(p) for p in paths}
        for _ in range(MAX_SYMLINK_HOPS + 1):  # the lookup, then one round per link followed
            answers = self._find(set(lookups.values()))
            next_round = {}
            for requested, current in lookups.items():
                answer = answers[current]
                if answer.kind == "file":
                    assert answer.content is not None
                    resolved = PurePosixPath(current)
                    results[requested] = ImageFile(requested, answer.content, answer.mode, resolved)
                elif answer.kind == "symlink":
                    next_round[requested] = str(follow_link(PurePosixPath(current), answer.link))
                elif answer.kind == "redirect":
                    next_round[requested] = answer.path
                elif answer.kind == "absent" or not strict:
                    results[requested] = None
                elif answer.kind == "dir":
                    raise UnsafeInputError(f"image path {requested} is a directory in the image")
                else:
                    raise UnsafeInputError(f"image path {requested} is a device file or FIFO")
            lookups = next_round
            if not lookups:
                return results
        raise UnsafeInputError(
            f"image paths {sorted(map(str, lookups))}: more than {MAX_SYMLINK_HOPS} hops"
        )

    def kinds(self, paths: Sequence[PurePosixPath]) -> dict[PurePosixPath, PathKind]:
        """What each path is, as `lstat` says: symlinks in its parents followed, not at it."""
        results: dict[PurePosixPath, PathKind] = {}
        lookups = {p: str(p) for p in paths}
        for _ in range(MAX_SYMLINK_HOPS + 1):  # the lookup, then one round per link followed
            answers = self._find(set(lookups.values()))
            next_round = {}
            for requested, current in lookups.items():
                answer = answers[current]
                if answer.kind == "redirect":  # an ancestor is a symlink: follow it
                    next_round[requested] = answer.path
                elif answer.kind in ("file", "dir", "symlink", "absent"):
                    results[requested] = cast(PathKind, answer.kind)
                else:
                    results[requested] = "other"
            lookups = next_round
            if not lookups:
                return results
        raise UnsafeInputError(
            f"image paths {sorted(map(str, lookups))}: more than {MAX_SYMLINK_HOPS} hops"
        )

    def _settle(self, paths: set[str], git_dirs: set[str]) -> set[str]:
        """Stream what is needed for `paths` and `git_dirs`; the git metadata names seen."""
        open_paths, open_dirs = set(paths), set(git_dirs)
        candidates = set(git_dirs)
        index = 0
        while (open_paths or open_dirs) and index < len(self.layers):
            window = self.layers[index : index + PARALLEL_LAYERS]
            wanted = _Wanted(frozenset(open_paths), frozenset(open_dirs))
            cancel = threading.Event()
            with ThreadPoolExecutor(max_workers=PARALLEL_LAYERS) as pool:
                futures = [self._record_for(pool, blob, wanted, cancel) for blob in window]
                try:
                    for future in futures:
                        index += 1
                        record = future.result()
                        for path in list(open_paths):
                            if _lookup(record, path) is not None or _below_checkout(record, path):
                                open_paths.discard(path)
                        for git_dir in list(open_dirs):
                            candidates |= {n for n in record.names if is_git_metadata(git_dir, n)}
                            if _git_dir_settled(record, git_dir):
                                open_dirs.discard(git_dir)
                        if not (open_paths or open_dirs):
                            break
                finally:
                    cancel.set()  # layers below the one that settled everything
        return candidates

    def _record_for(
        self, pool: ThreadPoolExecutor, blob: LayerBlob, wanted: _Wanted, cancel: threading.Event
    ) -> Future[Record]:
        """A record that decides everything wanted: known already, or streamed now."""
        limit = wanted.bounds()
        items = [order.bound(p, False) for p in wanted.paths]
        items += [order.bound(g, True) for g in wanted.git_dirs]
        record = self.records.get(blob.digest) or self.cache.load(blob.digest, self.scope)
        if record is not None and all(record.decides(i) for i in items):
            needs = [
                p
                for p, entry in record.names.items()
                if entry[0] == "file"
                and wanted.captures(p)
                and self.cache.content(record.contents.get(p, "")) is None
            ]
            if not needs:
                self.records[blob.digest] = record
                done: Future[Record] = Future()
                done.set_result(record)
                return done
        in_full = record is not None and record.unordered
        return pool.submit(self._stream, blob, wanted, limit, cancel, in_full)

    def _stream(
        self,
        blob: LayerBlob,
        wanted: _Wanted,
        limit: dict[str, Any],
        cancel: threading.Event,
        in_full: bool,
    ) -> Record:
        """Stream `blob` until its entries pass everything wanted, or to its verified end.

        `in_full`: an earlier full read found the layer in no known order, so its first
        entries passing `limit` prove nothing (the order check only fails further on).
        """
        stats = self.stats[blob.digest]
        stats.streams += 1
        record, checker = Record(), order.OrderCheck()
        cap = max(MIN_EXPANSION_CAP, EXPANSION_RATIO * blob.size)
        try:
            with blob.open() as raw:
                counting = _Counting(raw, blob, stats, self.on_layer(blob), cancel)
                with _tar_stream(counting, cap, blob.digest) as tar:
                    for member in tar:
                        path = _member_path(member.name, blob.digest)
                        parent, name = path.rsplit("/", 1)
                        if name == OPAQUE:
                            key, kind = parent or "/", "opaque"
                        elif name.startswith(WHITEOUT):
                            key, kind = f"{parent}/{name[len(WHITEOUT) :]}", "whiteout"
                        else:
                            key, kind = path, _kind(member)
                        if checker.alive and not checker.see(key):
                            log.debug(
                                "layer %s: entry %s is out of order; reading the layer in full",
                                blob.digest,
                                printable(path),
                            )
                        if not in_full and checker.beyond(key, limit):
                            record.stop, record.orders = key, sorted(checker.alive)
                            break
                        self._apply(record, tar, member, key, kind, wanted)
                    else:
                        record.complete, record.unordered = True, not checker.alive
                if record.complete:
                    counting.verify()
        except _Abandoned:
            return Record()
        except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as err:
            raise ImageError(f"layer {blob.digest}: unreadable: {err}") from None
        record.parents = set()
        self.cache.save(blob.digest, record, self.scope)
        self.records[blob.digest] = record
        return record

    def _apply(
        self,
        record: Record,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        key: str,
        kind: str,
        wanted: _Wanted,
    ) -> None:
        """One entry, applied as the engine applies it, capturing what is wanted."""
        if kind == "whiteout":
            record.drop(key)
            record.hidden.add(key)
            return
        if kind == "opaque":
            record.opaque.add(key)
            return
        link = ""
        if kind == "symlink":
            link = member.linkname
        elif kind == "hardlink":
            link = _member_path(member.linkname, "hardlink")
        mode = member.mode & 0o7777
        if kind == "hardlink" and wanted.captures(key):
            target = record.names.get(link)
            if target and target[0] == "file" and link in record.contents:
                record.add(key, "file", target[1], "")
                record.contents[key] = record.contents[link]
                return
        record.add(key, kind, mode, link)
        if kind == "file" and wanted.captures(key):
            if member.size > MAX_FILE_BYTES:
                raise UnsafeInputError(f"image path {key}: {member.size} bytes, over the limit")
            handle = tar.extractfile(member)
            assert handle is not None
            record.contents[key] = self.cache.put_content(handle.read())

    def _find(self, paths: set[str]) -> dict[str, _Answer]:
        """Answer each path from the records, streaming layers that cannot decide it yet."""
        self._settle(paths, set())
        answers: dict[str, _Answer] = {}
        for path in paths:
            answers[path] = self._answer(path)
        return answers

    def _answer(self, path: str) -> _Answer:
        for blob in self.layers:
            record = self.records.get(blob.digest)
            if record is None:
                break  # descent stopped above: settled absent
            answer = _lookup(record, path)
            if answer is None:
                if _below_checkout(record, path):
                    break
                continue
            if answer.kind == "file":
                answer.content = self.cache.content(record.contents.get(path, ""))
                if answer.content is None:
                    raise ImageError(f"layer {blob.digest}: content of {path} was not captured")
            elif answer.kind == "hardlink":
                return self._hardlink(blob, path, answer)
            return answer
        return _Answer("absent", path)

    def _hardlink(self, blob: LayerBlob, path: str, answer: _Answer) -> _Answer:
        """A hardlink reads as its target did in the same layer (the engine links inodes)."""
        record = self.records[blob.digest]
        target = record.names.get(answer.link)
        if not target or target[0] != "file":
            return _Answer("absent", path)
        if answer.link not in record.contents:  # not captured: read this layer up to it
            wanted = _Wanted(frozenset({answer.link}), frozenset())
            self.records[blob.digest] = self._stream(
                blob, wanted, wanted.bounds(), threading.Event(), record.unordered
            )
            record = self.records[blob.digest]
        content = self.cache.content(record.contents.get(answer.link, ""))
        if content is None:
            raise ImageError(f"layer {blob.digest}: hardlink target {answer.link} unreadable")
        return _Answer("file", path, content, target[1])


def read_config(data: bytes, digest: str, where: str) -> dict[str, Any]:
    """An image config blob, checked against its digest."""
    digests.checked(digest, f"{where}: config")
    if digests.of(data, digest.split(":", 1)[0]) != digest:
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
        # By (image id, manifest digest, scope), not the image id alone: two registries (or
        # manifests) may pair one config with different layers.
        self._layers: dict[tuple[str, str | None, str | None], tuple[list[LayerBlob], str | None]]
        self._layers = {}
        self._records: dict[str, dict[str, Record]] = {}

    def register(
        self,
        ref: ImageRef,
        image_id: str,
        digest: str | None,
        config: dict[str, Any],
        layers: list[LayerBlob],
        scope: str | None,
    ) -> ResolvedImage:
        """Remember an image's layers; `scope` keys its partial reads (None: keep none)."""
        for blob in layers:
            digests.checked(blob.digest, f"image {ref}: layer")
            self.layer_stats.setdefault(blob.digest, LayerStats(blob.digest, blob.size))
        self._layers[(image_id, digest, scope)] = (layers, scope)
        labels = (config.get("config") or {}).get("Labels") or {}
        created = config.get("created")
        return ResolvedImage(
            ref=ref,
            image_id=image_id,
            digest=digest,
            labels={printable(str(k)): printable(str(v)) for k, v in dict(labels).items()},
            created=printable(created) if isinstance(created, str) else None,
            provenance=scope,
        )

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        raise NotImplementedError

    def tags(self, repository: str) -> list[str]:
        raise NotImplementedError

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        return self._reader(image).read(paths, git_dirs)

    def _reader(self, image: ResolvedImage) -> LayerReader:
        key = (image.image_id, image.digest, image.provenance)
        if key not in self._layers:  # not resolved by this source (yet): resolve it now
            fresh = self.resolve(image.ref)
            if fresh.image_id != image.image_id:
                raise ImageError(f"image {image.ref} is now {fresh.image_id}, not {image.image_id}")
            self._layers[key] = self._layers[(fresh.image_id, fresh.digest, fresh.provenance)]
        layers, scope = self._layers[key]
        records = self._records.setdefault(scope or f"unscoped {image.image_id}", {})
        return LayerReader(layers, self.cache, scope, records, self.layer_stats, self._progress_for)

    def kinds(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, PathKind]:
        return self._reader(image).kinds(paths)

    def accounting(self) -> dict[str, Any]:
        layers = [
            {"digest": s.digest, "size": s.size, "fetched": s.fetched, "streams": s.streams}
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
