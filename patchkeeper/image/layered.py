"""What registry and layout sources share: resolved layer lists and the layer reader.

A source resolves a reference to a manifest and config, then `register`s the image's
layers here; reads and kind lookups go through one `LayerReader` per image, over one
layer cache, with per-layer byte accounting for `--json` and the benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from patchkeeper.errors import ImageError
from patchkeeper.image import digests
from patchkeeper.image.layers import LayerReader
from patchkeeper.image.model import ImageFile, ImageRef, PathKind, ResolvedImage, printable
from patchkeeper.image.record import LayerCache, Record
from patchkeeper.image.verified import LayerBlob, LayerStats
from patchkeeper.paths import cache_dir


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
    """The base of the registry and layout sources (see the module docstring)."""

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
