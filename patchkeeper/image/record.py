"""What one layer was seen to say, and the on-disk cache that keeps it between runs.

A `Record` holds a layer's entries as the engine applies them (see `layers`), and how
far the layer was read. `LayerCache` keeps records and captured file contents: a
record of a layer read to its verified end serves every source; a partly read one
only the scope (registry and manifest digest) that read it. Cached state is
untrusted: a record that does not parse is ignored, and contents are addressed by
their sha256 and re-checked on every load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from patchkeeper.image import digests, order
from patchkeeper.paths import atomic_write, directory


class Entry(NamedTuple):
    """One path as a layer leaves it: file, symlink, hardlink, dir or special."""

    kind: str
    mode: int
    link: str  # a symlink's target as written, a hardlink's absolute target path


def ancestors(path: str) -> list[str]:
    """Strict ancestors, innermost first, without `/`."""
    return [str(p) for p in PurePosixPath(path).parents if str(p) != "/"]


@dataclass
class Record:
    """What one layer was seen to say: the entries it applies, and how far it was read.

    `names` maps a path to its `Entry`; `hidden` are whiteout targets, `opaque`
    directories whose lower content is hidden, `contents` sha256 of captured files.
    A partly read record stopped at entry `stop` while keeping `orders`; an `unordered`
    one was read in full and followed no order, so no later pass may stop early on it.
    """

    names: dict[str, Entry] = field(default_factory=dict)
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
        if not (kind == "dir" and previous and previous.kind == "dir"):
            self.drop(path)
        self.names[path] = Entry(kind, mode, link)
        self.parents.update(ancestors(path))

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
            {str(path): Entry(*entry) for path, entry in dict(raw["names"]).items()},
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
