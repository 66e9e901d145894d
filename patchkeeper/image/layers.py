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

A layer read to its end is verified against its digest and size (`verified`: a
mismatch is bad input, and nothing of it is kept). What each layer showed is kept as a
`record.Record`, cached as `record.LayerCache` says.
"""

from __future__ import annotations

import logging
import tarfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, cast

import zstandard

from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image import order
from patchkeeper.image.model import ImageFile, PathKind, printable
from patchkeeper.image.paths import MAX_FILE_BYTES, MAX_SYMLINK_HOPS, follow_link
from patchkeeper.image.record import LayerCache, Record, ancestors
from patchkeeper.image.verified import Abandoned, CountingReader, LayerBlob, LayerStats, tar_stream

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
    for ancestor in reversed(ancestors(path)):  # outermost first: /a before /a/b
        entry = record.names.get(ancestor)
        if entry and entry.kind == "symlink":
            rest = PurePosixPath(path).relative_to(ancestor)
            return _Answer("redirect", str(follow_link(PurePosixPath(ancestor), entry.link) / rest))
        if entry and entry.kind != "dir":
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
    above = ancestors(path)
    return any(p in record.hidden for p in [path, *above]) or any(a in record.opaque for a in above)


def _below_checkout(record: Record, path: str) -> bool:
    """This layer created the git work tree `path` would live in, so nothing lower has it.

    `git clone` refuses a non-empty target, so a checkout arrives whole in one
    layer: a file of the tree absent from that layer and every upper one is
    absent from the image, and the large base layers need not be read.
    """
    return any(
        f"{a}/.git/HEAD" in record.names
        or getattr(record.names.get(f"{a}/.git"), "kind", None) == "file"
        for a in ancestors(path)
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

        def settle(requested: PurePosixPath, current: str, answer: _Answer) -> str | None:
            if answer.kind == "file":
                assert answer.content is not None
                resolved = PurePosixPath(current)
                results[requested] = ImageFile(requested, answer.content, answer.mode, resolved)
            elif answer.kind == "symlink":
                return str(follow_link(PurePosixPath(current), answer.link))
            elif answer.kind == "redirect":
                return answer.path
            elif answer.kind == "absent" or not strict:
                results[requested] = None
            elif answer.kind == "dir":
                raise UnsafeInputError(f"image path {requested} is a directory in the image")
            else:
                raise UnsafeInputError(f"image path {requested} is a device file or FIFO")
            return None

        self._hops(paths, settle)
        return results

    def kinds(self, paths: Sequence[PurePosixPath]) -> dict[PurePosixPath, PathKind]:
        """What each path is, as `lstat` says: symlinks in its parents followed, not at it."""
        results: dict[PurePosixPath, PathKind] = {}

        def settle(requested: PurePosixPath, _current: str, answer: _Answer) -> str | None:
            if answer.kind == "redirect":  # an ancestor is a symlink: follow it
                return answer.path
            known = answer.kind in ("file", "dir", "symlink", "absent")
            results[requested] = cast(PathKind, answer.kind) if known else "other"
            return None

        self._hops(paths, settle)
        return results

    def _hops(
        self,
        paths: Sequence[PurePosixPath],
        settle: Callable[[PurePosixPath, str, _Answer], str | None],
    ) -> None:
        """Look every path up, then one round per link followed, until `settle` (given the
        requested path, the path looked up and its answer) returns no next path for any."""
        lookups = {p: str(p) for p in paths}
        for _ in range(MAX_SYMLINK_HOPS + 1):
            answers = self._find(set(lookups.values()))
            lookups = {
                requested: hop
                for requested, current in lookups.items()
                if (hop := settle(requested, current, answers[current])) is not None
            }
            if not lookups:
                return
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
                if entry.kind == "file"
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
                counting = CountingReader(raw, blob, stats, self.on_layer(blob), cancel)
                with tar_stream(counting, cap, blob.digest) as tar:
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
        except Abandoned:
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
            if target and target.kind == "file" and link in record.contents:
                record.add(key, "file", target.mode, "")
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
        if not target or target.kind != "file":
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
        return _Answer("file", path, content, target.mode)
