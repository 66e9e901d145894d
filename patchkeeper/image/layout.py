"""Image source for images on disk: OCI image layouts and `docker save` archives.

For air-gapped users and `skopeo copy` output. Nothing is extracted: blobs are
streamed from the layout directory or straight out of the archive. Files on disk can
be edited: a layer read in full is verified like any other, and nothing read from a
partly read layer is ever cached (results carry no provenance).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from patchkeeper.errors import ConfigError, ImageError
from patchkeeper.image import digests
from patchkeeper.image.layered import LayeredSource, read_config
from patchkeeper.image.manifests import choose_platform, image_parts, is_index, parse_json
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.image.verified import LayerBlob

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class _Slice(io.RawIOBase):
    """The next `size` bytes of `handle`: one archive member, read by one thread."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


class _Store:
    """Named files of a layout, from a directory or from inside a tar archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # held open for the source's lifetime: blobs are streamed from it on demand
        self.tar = tarfile.open(path, "r:") if path.is_file() else None  # noqa: SIM115
        self.members = {m.name.removeprefix("./"): m for m in self.tar} if self.tar else {}

    def exists(self, name: str) -> bool:
        return name in self.members if self.tar else (self.path / name).is_file()

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        parts = PurePosixPath(name).parts
        if not parts or ".." in parts or name.startswith("/"):
            raise ImageError(f"{self.path}: refusing path {name!r} in the layout")
        if self.tar:
            member = self.members.get(name)
            if member is None or not member.isreg() or member.issparse():
                raise ImageError(f"{self.path}: no file {name} in the archive")
            # A handle of its own: layers are read in parallel, and handles from
            # `extractfile` share one file position between threads.
            with self.path.open("rb") as archive:
                archive.seek(member.offset_data)
                yield io.BufferedReader(_Slice(archive, member.size))
        else:
            with (self.path / name).open("rb") as handle:
                yield handle

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError:
            raise ImageError(f"{self.path}: {name} is not JSON") from None

    def size(self, name: str) -> int:
        return self.members[name].size if self.tar else (self.path / name).stat().st_size


def _blob_name(digest: Any) -> str:
    algorithm, _, hex_digest = digests.checked(digest, "image layout: blob").partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


class LayoutSource(LayeredSource):
    """An OCI image layout directory, or a `docker save` tarball (either format)."""

    name = "layout"

    def __init__(self, path: Path, platform: str = "linux/amd64", progress: Any = None) -> None:
        super().__init__(progress)
        if not path.exists():
            raise ConfigError(f"{path}: no such image layout or archive")
        self.store = _Store(path)
        self.platform = platform

    def _named(self) -> dict[str, dict[str, Any]]:
        """tag or full reference -> OCI descriptor (from index.json annotations)."""
        if not self.store.exists("index.json"):
            return {}
        found = {}
        for entry in self.store.json("index.json").get("manifests", []):
            notes = entry.get("annotations") or {}
            for name in (notes.get(REF_NAME), notes.get(CONTAINERD_NAME)):
                if name:
                    found[name] = entry
        return found

    def _legacy(self) -> list[dict[str, Any]]:
        return list(self.store.json("manifest.json")) if self.store.exists("manifest.json") else []

    def tags(self, repository: str) -> list[str]:
        names = list(self._named()) + [t for m in self._legacy() for t in m.get("RepoTags") or []]
        tags = {n.rsplit(":", 1)[1] for n in names if n.startswith(f"{repository}:")}
        tags |= {n for n in names if ":" not in n and "/" not in n}  # bare OCI ref names
        return sorted(tags)

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        named = self._named()
        for key in (str(ref), f"{ref.repository}:{ref.tag}", ref.tag or ""):
            if key in named:
                return self._resolve_oci(ref, named[key])
        for manifest in self._legacy():
            if f"{ref.repository}:{ref.tag}" in (manifest.get("RepoTags") or []):
                return self._resolve_legacy(ref, manifest)
        raise ImageError(f"{self.store.path}: no image {ref} in this layout or archive")

    def _resolve_oci(self, ref: ImageRef, descriptor: dict[str, Any]) -> ResolvedImage:
        digest = descriptor.get("digest")
        body = self._manifest(digest)
        if is_index(body, descriptor.get("mediaType", "")):
            body = self._manifest(choose_platform(body, self.platform, str(ref)))
        config_ref, layer_refs = image_parts(body, f"{self.store.path}: {ref}")
        config_digest = config_ref.digest
        config = read_config(self.store.read(_blob_name(config_digest)), config_digest, str(ref))
        layers = [
            LayerBlob(
                layer.digest,
                layer.size,
                layer.media_type,
                functools.partial(self.store.open, _blob_name(layer.digest)),
            )
            for layer in layer_refs
        ]
        return self.register(ref, config_digest, digest, config, layers, None)

    def _manifest(self, digest: Any) -> dict[str, Any]:
        """A manifest or index blob, checked against the digest that names it."""
        name = _blob_name(digest)
        data = self.store.read(name)
        if digests.of(data, str(digest).split(":", 1)[0]) != digest:
            raise ImageError(f"{self.store.path}: {name} does not match its digest")
        return parse_json(data, f"{self.store.path}: {name}")

    def _resolve_legacy(self, ref: ImageRef, manifest: dict[str, Any]) -> ResolvedImage:
        """`docker save` before OCI: layers are uncompressed tars named by path."""
        config_bytes = self.store.read(str(manifest["Config"]))
        config_digest = digests.of(config_bytes)
        config = read_config(config_bytes, config_digest, str(ref))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        names = list(manifest.get("Layers") or [])
        if len(diff_ids) != len(names):
            raise ImageError(f"{self.store.path}: {ref}: layers and diff_ids disagree")
        layers = [
            LayerBlob(
                diff_id,
                self.store.size(name),
                "application/vnd.oci.image.layer.v1.tar",
                functools.partial(self.store.open, name),
            )
            for diff_id, name in zip(diff_ids, names, strict=True)
        ]
        for diff_id in diff_ids:
            digests.checked(diff_id, f"{self.store.path}: {ref}: diff_id")
        return self.register(ref, config_digest, None, config, layers, None)
