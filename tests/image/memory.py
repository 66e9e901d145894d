"""In-memory images the image tests share (no registry, no daemon): layers as a
source offers them (`Blobs`, `reader_for`, `read`, `MemorySource`) and an image as a
dict of files behind the ImageSource interface (`DictSource`, `image`)."""

from __future__ import annotations

import contextlib
import io
import posixpath
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from rich.progress import Progress

from patchkeeper.image.identity import REVISION_LABEL
from patchkeeper.image.layered import LayeredSource
from patchkeeper.image.layers import LayerReader
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage
from patchkeeper.image.record import LayerCache
from patchkeeper.image.verified import LayerBlob, LayerStats
from tests.oci import Layer

P = PurePosixPath


class Blobs:
    """Layers as a source offers them, counting how often each is opened."""

    def __init__(self, *layers: Layer) -> None:  # bottom first, as manifests list them
        self.layers = layers
        self.opened: list[int] = []

    def blobs(self) -> list[LayerBlob]:
        return [self._blob(i, lay) for i, lay in enumerate(self.layers)]

    def _blob(self, index: int, lay: Layer) -> LayerBlob:
        @contextlib.contextmanager
        def open_() -> Iterator[io.BytesIO]:
            self.opened.append(index)
            yield io.BytesIO(lay.blob)

        return LayerBlob(lay.digest, lay.size, lay.media_type, open_)


def reader_for(blobs: list[LayerBlob], cache: LayerCache) -> LayerReader:
    """A reader with no partial-read scope and fresh byte counters per layer."""
    stats = {blob.digest: LayerStats(blob.digest, blob.size) for blob in blobs}
    return LayerReader(blobs, cache, None, {}, stats)


def read(tmp_path: Path, *layers: Layer, paths: list[str]) -> dict[str, bytes | None]:
    reader = reader_for(Blobs(*layers).blobs(), LayerCache(tmp_path / "cache"))
    found = reader.read([P(p) for p in paths])
    return {str(k): None if v is None else v.content for k, v in found.items()}


IMAGE_ID = "sha256:" + "9" * 64


def noise(count: int = 100) -> dict[str, bytes]:
    """Incompressible files: a layer several buffer-fulls long on the wire too."""
    rng = random.Random(0)
    return {f"z/{i}": rng.randbytes(4096) for i in range(count)}


class MemorySource(LayeredSource):
    name = "memory"

    def __init__(self, layers: list[Layer], progress: Progress | None = None) -> None:
        super().__init__(progress)
        self.blobs = Blobs(*layers)
        self.resolved = 0

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        self.resolved += 1
        config = {"created": "2026-06-21T00:00:00Z", "config": {"Labels": {"k": "v"}}}
        return self.register(
            ref, IMAGE_ID, "sha256:" + "8" * 64, config, self.blobs.blobs(), "memory"
        )


SHA = "0123456789abcdef0123456789abcdef01234567"
ROOT = PurePosixPath("/sgl-workspace/sglang")
PATTERN = re.compile(r"^nightly-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$")


class DictSource:
    """An image as a dict of files, keyed as a real image keys them: normalised paths
    (an entry named with `..` could never be read from a layer, so none is kept)."""

    name = "dict"

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {PurePosixPath(posixpath.normpath(k)): v.encode() for k, v in files.items()}

    def tags(self, repository: str) -> list[str]:
        return []

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        return ResolvedImage(ref, "sha256:" + "0" * 64, None)

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        wanted = set(paths) | {p for p in self.files for g in git_dirs if p == g or g in p.parents}
        return {
            p: ImageFile(p, self.files[p], 0o644, p) if p in self.files else None for p in wanted
        }


def image(tag: str = f"nightly-20260621-{SHA[:8]}", label: str | None = None) -> ResolvedImage:
    labels = {REVISION_LABEL: label} if label else {}
    return ResolvedImage(ImageRef("r", tag), "sha256:" + "0" * 64, None, labels)
