"""Test infrastructure for OCI images read without a daemon.

Four parts, all usable from any test with ``from tests.oci import ...``:

1. Crafting images byte by byte: `Entry` (one tar member, hostile names allowed), `layer`,
   `whiteout`/`opaque`, `Image` (OCI or Docker schema2 manifest) and `index`.
2. `push` / `RegistryClient`: the OCI distribution protocol over httpx, with HTTP Basic and
   Docker-style bearer-token auth (and optional retries on 429/5xx).
3. Pytest fixtures that run real `docker-registry` processes needing credentials:
   `htpasswd_registry`, `token_registry` (with its own token server) and `flaky_proxy`;
   and `ScriptedRegistry`, a loopback server that answers from a script: what a hostile
   or broken registry does (lying blobs, stalls, drips, looping or cross-host links).
4. On disk: `write_oci_layout`, `docker_save`, plus `read_tar` and `engine_read` for
   looking at what the real engine made of an image.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self, TypeAlias
from urllib.parse import parse_qs, urlsplit

import bcrypt
import httpx
import jwt
import pytest
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# --- media types ---------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Not in the Docker schema2 spec, but used by containerd/moby for these compressions.
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

DEFAULT_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z; fixed so blobs are reproducible
DEFAULT_CREATED = "2024-01-01T00:00:00Z"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

Compression: TypeAlias = Literal["gzip", "zstd", "none"]
Flavor: TypeAlias = Literal["oci", "docker"]
EntryKind: TypeAlias = Literal["file", "dir", "symlink", "hardlink", "chardev", "blockdev", "fifo"]


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact JSON bytes (key order kept): what gets digested and pushed."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# --- 1. crafting layers ----------------------------------------------------------------------

_TAR_TYPES: dict[EntryKind, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_KINDS: dict[bytes, EntryKind] = {value: key for key, value in _TAR_TYPES.items()}
_KINDS[tarfile.AREGTYPE] = "file"
_KINDS[tarfile.CONTTYPE] = "file"
_DEFAULT_MODES: dict[EntryKind, int] = {
    "file": 0o644,
    "dir": 0o755,
    "symlink": 0o777,
    "hardlink": 0o644,
    "chardev": 0o666,
    "blockdev": 0o660,
    "fifo": 0o644,
}


@dataclass(frozen=True)
class Entry:
    """One tar member. `name` is written verbatim: "../../etc/passwd", "/abs" and "a/../../b"
    are all allowed (tarfile only appends "/" to directory names)."""

    name: str
    kind: EntryKind = "file"
    data: bytes = b""
    linkname: str = ""
    mode: int | None = None  # None: the kind's usual mode (0o644 files, 0o755 dirs, ...)
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    devmajor: int = 0
    devminor: int = 0
    pax_headers: Mapping[str, str] = field(default_factory=dict)  # e.g. SCHILY.xattr.*

    @classmethod
    def file(cls, name: str, data: bytes | str = b"", mode: int = 0o644) -> Entry:
        """A regular file."""
        return cls(name, "file", data.encode() if isinstance(data, str) else data, mode=mode)

    @classmethod
    def dir(cls, name: str, mode: int = 0o755) -> Entry:
        """A directory."""
        return cls(name, "dir", mode=mode)

    @classmethod
    def symlink(cls, name: str, target: str) -> Entry:
        """A symbolic link to `target` (kept verbatim, may be absolute or climb out)."""
        return cls(name, "symlink", linkname=target)

    @classmethod
    def hardlink(cls, name: str, target: str) -> Entry:
        """A hard link to the earlier member named `target`."""
        return cls(name, "hardlink", linkname=target)

    @classmethod
    def chardev(cls, name: str, major: int = 0, minor: int = 0) -> Entry:
        """A character device (0/0 is overlayfs' native whiteout, not OCI's)."""
        return cls(name, "chardev", devmajor=major, devminor=minor)

    @classmethod
    def fifo(cls, name: str) -> Entry:
        """A named pipe."""
        return cls(name, "fifo")

    @property
    def effective_mode(self) -> int:
        return _DEFAULT_MODES[self.kind] if self.mode is None else self.mode

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = _TAR_TYPES[self.kind]
        info.mode = self.effective_mode
        info.uid, info.gid, info.mtime = self.uid, self.gid, self.mtime
        info.linkname = self.linkname
        info.devmajor, info.devminor = self.devmajor, self.devminor
        info.size = len(self.data) if self.kind == "file" else 0
        info.pax_headers = dict(self.pax_headers)
        return info


def _tidy(path: str) -> str:
    return path.strip("/")


def whiteout(path: str) -> Entry:
    """OCI whiteout hiding `path` from lower layers: "dir/name" -> "dir/.wh.name"."""
    parent, _, name = _tidy(path).rpartition("/")
    if not name:
        raise ValueError(f"cannot white out {path!r}")
    return Entry.file(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)


def opaque(directory: str) -> Entry:
    """OCI opaque marker: lower layers' content of `directory` is hidden ("dir/.wh..wh..opq")."""
    directory = _tidy(directory)
    return Entry.file(f"{directory}/{OPAQUE_MARKER}" if directory else OPAQUE_MARKER)


def tree(files: Mapping[str, bytes | str], *, parents: bool = True) -> list[Entry]:
    """Regular files from a {path: content} mapping, preceded by entries for their parent
    directories (each once, shallowest first) unless `parents` is false."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for path, data in files.items():
        parts = _tidy(path).split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if parents and directory not in seen:
                seen.add(directory)
                entries.append(Entry.dir(directory))
        entries.append(Entry.file(_tidy(path), data))
    return entries


def make_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed (PAX) tar of `entries`, in order, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            data = io.BytesIO(entry.data) if entry.kind == "file" else None
            tar.addfile(entry.tarinfo(), data)
    return buffer.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    """gzip (mtime 0, reproducible), zstd, or unchanged."""
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def decompress(blob: bytes) -> bytes:
    """Undo `compress`, recognising gzip and zstd by their magic numbers."""
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


_OCI_LAYER_TYPES: dict[Compression, str] = {
    "gzip": OCI_LAYER_GZIP,
    "zstd": OCI_LAYER_ZSTD,
    "none": OCI_LAYER_TAR,
}
_DOCKER_LAYER_TYPES: dict[Compression, str] = {
    "gzip": DOCKER_LAYER_GZIP,
    "zstd": DOCKER_LAYER_ZSTD,
    "none": DOCKER_LAYER_TAR,
}


@dataclass(frozen=True)
class Layer:
    """A layer blob. `media_type` (OCI) / `docker_media_type` can be overridden with
    `dataclasses.replace`, e.g. to lie about the compression."""

    blob: bytes  # as stored in a registry (compressed)
    tar: bytes  # uncompressed
    compression: Compression
    media_type: str
    docker_media_type: str

    @cached_property
    def digest(self) -> str:
        """sha256 of the blob: what manifests reference."""
        return sha256_digest(self.blob)

    @cached_property
    def diff_id(self) -> str:
        """sha256 of the uncompressed tar: what the config's rootfs.diff_ids list."""
        return sha256_digest(self.tar)

    @property
    def size(self) -> int:
        return len(self.blob)

    def descriptor(self, flavor: Flavor = "oci") -> dict[str, Any]:
        media_type = self.media_type if flavor == "oci" else self.docker_media_type
        return {"mediaType": media_type, "digest": self.digest, "size": self.size}

    def entries(self) -> list[Entry]:
        return read_tar(self.tar)


def layer_from_tar(tar: bytes, compression: Compression = "gzip") -> Layer:
    """A layer from raw tar bytes (hand-made or deliberately malformed)."""
    return Layer(
        blob=compress(tar, compression),
        tar=tar,
        compression=compression,
        media_type=_OCI_LAYER_TYPES[compression],
        docker_media_type=_DOCKER_LAYER_TYPES[compression],
    )


def layer(entries: Iterable[Entry], compression: Compression = "gzip") -> Layer:
    """A layer holding exactly `entries`, in order."""
    return layer_from_tar(make_tar(entries), compression)


def read_tar(data: bytes) -> list[Entry]:
    """The members of a tar (gzip/zstd/plain) as `Entry`s, names verbatim."""
    entries: list[Entry] = []
    with tarfile.open(fileobj=io.BytesIO(decompress(data)), mode="r:") as tar:
        for info in tar:
            content = b""
            if info.isreg():
                extracted = tar.extractfile(info)
                assert extracted is not None
                content = extracted.read()
            entries.append(
                Entry(
                    name=info.name,
                    kind=_KINDS.get(info.type, "file"),
                    data=content,
                    linkname=info.linkname,
                    mode=info.mode & 0o7777,
                    uid=info.uid,
                    gid=info.gid,
                    mtime=int(info.mtime),
                    devmajor=info.devmajor,
                    devminor=info.devminor,
                    pax_headers=dict(info.pax_headers),
                )
            )
    return entries


# --- 1. images and indexes -------------------------------------------------------------------


def _parse_platform(platform: str) -> tuple[str, str, str | None]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r} is not os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


@dataclass(frozen=True)
class Image:
    """A single-platform image: layers bottom first, a config, one manifest.

    `flavor="oci"` gives an OCI manifest and config; `flavor="docker"` a Docker v2 schema2
    manifest (`as_docker()` switches an existing image)."""

    layers: Sequence[Layer]
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = DEFAULT_CREATED
    env: Sequence[str] = DEFAULT_ENV
    cmd: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    flavor: Flavor = "oci"
    annotations: Mapping[str, str] = field(default_factory=dict)  # OCI manifests only
    extra_config: Mapping[str, Any] = field(default_factory=dict)  # merged into config.config

    def as_docker(self) -> Image:
        return replace(self, flavor="docker")

    def as_oci(self) -> Image:
        return replace(self, flavor="oci")

    @property
    def platform(self) -> dict[str, str]:
        platform = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            platform["variant"] = self.variant
        return platform

    @cached_property
    def config(self) -> dict[str, Any]:
        runtime: dict[str, Any] = {"Env": list(self.env)}
        if self.cmd is not None:
            runtime["Cmd"] = list(self.cmd)
        if self.entrypoint is not None:
            runtime["Entrypoint"] = list(self.entrypoint)
        if self.working_dir is not None:
            runtime["WorkingDir"] = self.working_dir
        if self.user is not None:
            runtime["User"] = self.user
        if self.labels:
            runtime["Labels"] = dict(self.labels)
        runtime.update(self.extra_config)
        config: dict[str, Any] = {"created": self.created, **self.platform, "config": runtime}
        config["rootfs"] = {"type": "layers", "diff_ids": [lay.diff_id for lay in self.layers]}
        config["history"] = [
            {"created": self.created, "created_by": f"tests.oci layer {number}"}
            for number in range(len(self.layers))
        ]
        return config

    @cached_property
    def config_blob(self) -> bytes:
        return canonical_json(self.config)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config_blob)

    @property
    def config_media_type(self) -> str:
        return OCI_CONFIG if self.flavor == "oci" else DOCKER_CONFIG

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST if self.flavor == "oci" else DOCKER_MANIFEST

    @cached_property
    def manifest(self) -> dict[str, Any]:
        config = {
            "mediaType": self.config_media_type,
            "digest": self.config_digest,
            "size": len(self.config_blob),
        }
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": config,
            "layers": [lay.descriptor(self.flavor) for lay in self.layers],
        }
        if self.annotations and self.flavor == "oci":  # schema2 has no annotations
            manifest["annotations"] = dict(self.annotations)
        return manifest

    @cached_property
    def manifest_blob(self) -> bytes:
        return canonical_json(self.manifest)

    @cached_property
    def digest(self) -> str:
        """The manifest digest (what a registry reports as Docker-Content-Digest)."""
        return sha256_digest(self.manifest_blob)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest_blob),
        }

    @property
    def blobs(self) -> dict[str, bytes]:
        """Layer and config blobs by digest (no manifests), layers first."""
        blobs = {lay.digest: lay.blob for lay in self.layers}
        blobs[self.config_digest] = self.config_blob
        return blobs

    def all_blobs(self) -> dict[str, bytes]:
        """Every content-addressed blob, manifest included (an OCI layout's blobs/)."""
        return {**self.blobs, self.digest: self.manifest_blob}


@dataclass(frozen=True)
class Index:
    """A multi-platform image: an OCI image index or (flavor "docker") a manifest list."""

    images: Sequence[Image]
    flavor: Flavor = "oci"
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        return OCI_INDEX if self.flavor == "oci" else DOCKER_MANIFEST_LIST

    @cached_property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [{**img.descriptor(), "platform": img.platform} for img in self.images],
        }
        if self.annotations:
            manifest["annotations"] = dict(self.annotations)
        return manifest

    @cached_property
    def manifest_blob(self) -> bytes:
        return canonical_json(self.manifest)

    @cached_property
    def digest(self) -> str:
        return sha256_digest(self.manifest_blob)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest_blob),
        }

    def image_for(self, platform: str) -> Image:
        """The child image for "os/arch[/variant]"."""
        os_, arch, variant = _parse_platform(platform)
        for img in self.images:
            if (img.os, img.architecture) == (os_, arch) and variant in (None, img.variant):
                return img
        raise KeyError(platform)

    def all_blobs(self) -> dict[str, bytes]:
        blobs: dict[str, bytes] = {}
        for img in self.images:
            blobs.update(img.all_blobs())
        blobs[self.digest] = self.manifest_blob
        return blobs


Artifact: TypeAlias = Image | Index


def index(
    images_by_platform: Mapping[str, Image],
    *,
    flavor: Flavor = "oci",
    annotations: Mapping[str, str] | None = None,
) -> Index:
    """An index over {"linux/amd64": image, "linux/arm64/v8": ...}. Each image's os,
    architecture and variant are set from its key, and its flavor from `flavor`."""
    images = []
    for platform, img in images_by_platform.items():
        os_, arch, variant = _parse_platform(platform)
        images.append(replace(img, os=os_, architecture=arch, variant=variant, flavor=flavor))
    return Index(images, flavor=flavor, annotations=dict(annotations or {}))


# --- 2. registry client ----------------------------------------------------------------------


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="..",service=".."` -> ("bearer", {"realm": .., "service": ..})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _base_url(registry: str) -> str:
    registry = registry.rstrip("/")
    return registry if "://" in registry else f"http://{registry}"


class RegistryClient:
    """A minimal OCI distribution client: blobs, manifests, tags, with Basic or bearer-token
    auth answered on the registry's 401 challenge. `retries` > 0 retries 429 and 5xx
    answers after their Retry-After (capped at 5 s). Records `uploaded`/`skipped` blob
    digests and `token_fetches`."""

    def __init__(
        self,
        registry: str,
        auth: tuple[str, str] | None = None,
        *,
        retries: int = 0,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = _base_url(registry)
        self.auth = auth
        self.retries = retries
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self.uploaded: list[str] = []
        self.skipped: list[str] = []
        self.token_fetches = 0
        self._scheme: str | None = None  # learnt from the first challenge
        self._challenge: dict[str, str] = {}
        self._tokens: dict[str, str] = {}  # scope -> bearer token

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- auth --

    def _authorization(self, scope: str) -> str | None:
        if self._scheme == "basic" and self.auth:
            raw = f"{self.auth[0]}:{self.auth[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self._scheme == "bearer" and scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        return None

    def _fetch_token(self, scope: str) -> None:
        params: dict[str, str] = {}
        if "service" in self._challenge:
            params["service"] = self._challenge["service"]
        if scope:
            params["scope"] = scope
        self.token_fetches += 1
        response = self.http.get(
            self._challenge["realm"], params=params, auth=self.auth or httpx.USE_CLIENT_DEFAULT
        )
        response.raise_for_status()
        body = response.json()
        self._tokens[scope] = body.get("token") or body["access_token"]

    def _learn(self, response: httpx.Response, scope: str) -> bool:
        """Handle a 401: returns True when a retry with new credentials makes sense."""
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            first = self._scheme != "basic"
            self._scheme = "basic"
            return first and self.auth is not None
        if scheme == "bearer" and "realm" in params:
            self._scheme, self._challenge = "bearer", params
            scope = scope or params.get("scope", "")
            self._fetch_token(scope)
            return True
        return False

    # -- requests --

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scope: str = "",
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request, authenticating (once) on 401 and retrying 429/5xx. `scope` is
        the token scope to ask for ("repository:NAME:pull,push"); returns any status."""
        attempts, authenticated = 0, False
        while True:
            sent = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization:
                sent["Authorization"] = authorization
            response = self.http.request(method, url, headers=sent, content=content, params=params)
            if response.status_code == 401 and not authenticated:
                authenticated = True
                if self._learn(response, scope):
                    continue
            if (response.status_code == 429 or response.status_code >= 500) and (
                attempts < self.retries
            ):
                attempts += 1
                time.sleep(min(float(response.headers.get("retry-after", "0") or 0), 5.0))
                continue
            return response

    def _checked(self, response: httpx.Response, *expected: int) -> httpx.Response:
        if response.status_code not in expected:
            response.read()
            raise httpx.HTTPStatusError(
                f"{response.request.method} {response.request.url} -> {response.status_code}: "
                f"{response.text[:500]}",
                request=response.request,
                response=response,
            )
        return response

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    def ping(self) -> httpx.Response:
        """GET /v2/ (authenticating if challenged)."""
        return self.request("GET", "/v2/")

    def blob_exists(self, repository: str, digest: str, actions: str = "pull") -> bool:
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, actions)
        )
        if response.status_code == 404:
            return False
        return self._checked(response, 200).status_code == 200

    def push_blob(self, repository: str, digest: str, data: bytes) -> bool:
        """Monolithic upload (POST then PUT ?digest=); False when the blob was already there."""
        scope = self._scope(repository, "pull,push")
        if self.blob_exists(repository, digest, "pull,push"):
            self.skipped.append(digest)
            return False
        started = self._checked(
            self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope), 202
        )
        location = httpx.URL(started.headers["location"])
        if not location.is_absolute_url:
            location = self.http.base_url.join(location)
        finished = self._checked(
            self.request(
                "PUT",
                location.copy_merge_params({"digest": digest}),
                scope=scope,
                headers={"Content-Type": "application/octet-stream"},
                content=data,
            ),
            201,
        )
        reported = finished.headers.get("docker-content-digest")
        if reported != digest:
            raise AssertionError(f"registry stored blob {digest} as {reported}")
        self.uploaded.append(digest)
        return True

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """PUT a manifest under a tag or digest; returns (and checks) the registry's digest."""
        response = self._checked(
            self.request(
                "PUT",
                f"/v2/{repository}/manifests/{reference}",
                scope=self._scope(repository, "pull,push"),
                headers={"Content-Type": media_type},
                content=data,
            ),
            201,
        )
        digest = sha256_digest(data)
        reported = response.headers.get("docker-content-digest")
        if reported != digest:
            raise AssertionError(f"registry stored manifest {digest} as {reported}")
        return digest

    def push(self, repository: str, tag: str | None, artifact: Artifact) -> str:
        """Push blobs, child manifests (by digest) and the manifest (by tag, or by digest
        when `tag` is None); returns the manifest digest."""
        if isinstance(artifact, Index):
            for child in artifact.images:
                self.push(repository, None, child)
        else:
            for digest, data in artifact.blobs.items():
                self.push_blob(repository, digest, data)
        return self.put_manifest(
            repository, tag or artifact.digest, artifact.media_type, artifact.manifest_blob
        )

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = MANIFEST_TYPES
    ) -> httpx.Response:
        """GET a manifest (raises on non-200); .content, .headers['content-type'] and
        .headers['docker-content-digest'] are what tests usually want."""
        return self._checked(
            self.request(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                scope=self._scope(repository, "pull"),
                headers={"Accept": ", ".join(accept)},
            ),
            200,
        )

    def get_blob(self, repository: str, digest: str) -> bytes:
        """GET a blob (following the registry's redirect, if any)."""
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, "pull")
        )
        if response.status_code in (301, 302, 303, 307, 308):
            response = self.http.get(response.headers["location"])
        return self._checked(response, 200).content

    def tags(self, repository: str) -> list[str]:
        response = self._checked(
            self.request(
                "GET", f"/v2/{repository}/tags/list", scope=self._scope(repository, "pull")
            ),
            200,
        )
        return list(response.json().get("tags") or [])


def push(
    registry: str,
    repository: str,
    tag: str | None,
    artifact: Artifact,
    auth: tuple[str, str] | None = None,
    *,
    retries: int = 0,
) -> str:
    """Push an `Image` or `Index` to `registry` ("127.0.0.1:5000" or "http://..."); returns
    the manifest digest, checked against the registry's Docker-Content-Digest. Raises
    httpx.HTTPStatusError (e.g. 401) when the registry refuses."""
    with RegistryClient(registry, auth, retries=retries) as client:
        return client.push(repository, tag, artifact)


# --- 3. registries that need credentials -----------------------------------------------------

USERNAME = "patch"
PASSWORD = "keeper-secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def registry_binary() -> str:
    """The distribution registry binary (Debian: /usr/bin/docker-registry)."""
    found = (
        os.environ.get("PATCHKEEPER_REGISTRY_BINARY")
        or shutil.which("docker-registry")
        or shutil.which("registry")
    )
    if not found:
        raise RuntimeError("no docker-registry binary (Debian package docker-registry)")
    return found


@dataclass
class RegistryServer:
    """A running registry process."""

    host: str  # "127.0.0.1:PORT"
    url: str  # "http://127.0.0.1:PORT"
    root: Path  # its working directory: config, storage, log
    log_path: Path
    username: str | None = None
    password: str | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    account: str | None  # None: anonymous
    service: str | None
    scopes: tuple[str, ...]
    status: int
    granted: tuple[tuple[str, str, tuple[str, ...]], ...]  # (type, name, actions)


@dataclass
class TokenRegistryServer(RegistryServer):
    """A registry with bearer-token auth and the token server it trusts."""

    token_url: str = ""
    service: str = ""
    issuer: str = ""
    public: tuple[str, ...] = ()
    token_requests: list[TokenRequest] = field(default_factory=list)
    rootcertbundle: Path | None = None  # the token signer's certificate (PEM)


def _wait_until_up(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/v2/", timeout=2).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"registry at {url} did not come up (exit {process.poll()}):\n{tail}")


@contextmanager
def run_registry(
    root: Path, auth: Mapping[str, Any] | None = None, *, startup_timeout: float = 30.0
) -> Iterator[RegistryServer]:
    """Run `docker-registry serve` with storage and config under `root`, on a free
    loopback port, with the given `auth:` section; stop it on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": host, "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = dict(auth)
    config_path = root / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log_path = root / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [registry_binary(), "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://{host}"
        _wait_until_up(url, process, log_path, startup_timeout)
        yield RegistryServer(host=host, url=url, root=root, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """A bcrypt htpasswd file (the only hash distribution accepts)."""
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
        for user, password in users.items()
    ]
    path.write_text("".join(lines))


@contextmanager
def run_htpasswd_registry(
    root: Path, username: str = USERNAME, password: str = PASSWORD
) -> Iterator[RegistryServer]:
    """A registry with `auth: htpasswd` and one user."""
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = root / "htpasswd"
    write_htpasswd(htpasswd, {username: password})
    auth = {"htpasswd": {"realm": "patchkeeper-test", "path": str(htpasswd)}}
    with run_registry(root, auth) as server:
        yield replace(server, username=username, password=password)


@dataclass(frozen=True)
class SigningKey:
    """A JWT signing key with its self-signed certificate."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate: x509.Certificate
    algorithm: str

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def x5c(self) -> list[str]:
        return [
            base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()
        ]

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.key, algorithm=self.algorithm, headers={"x5c": self.x5c}
        )


def make_signing_key(algorithm: Literal["ES256", "RS256"] = "ES256") -> SigningKey:
    """A fresh key and a one-year self-signed CA certificate for it."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "patchkeeper test token issuer")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SigningKey(key, certificate, algorithm)


def _parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Split a scope: repository:a/b:pull,push -> ("repository", "a/b", ("pull", "push"))."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, tuple(action for action in actions.split(",") if action)


class BackgroundHTTPServer:
    """An http.server on a free loopback port, served from a daemon thread inside `with`.

    Subclasses set their own state first, then call `super().__init__()`, and provide
    the request handler class through `_handler_class`.
    """

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A client that resets its connection between the poll and accept() would leave a
        # blocking accept() waiting for the next client, and shutdown() waiting on it
        # forever; with a timeout, accept() gives up and the serve loop goes on.
        self._server.socket.settimeout(1.0)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class TokenServer(BackgroundHTTPServer):
    """A Docker-Hub-style token server (GET realm?service=..&scope=.. with optional Basic
    credentials) in a thread. Users get every action they ask for; anonymous callers get
    `pull` on repositories matching `public` (fnmatch patterns) and a 401 when nothing they
    asked for is granted. Every request is appended to `requests`."""

    def __init__(
        self,
        *,
        service: str,
        issuer: str,
        users: Mapping[str, str],
        public: Sequence[str] = ("public/*",),
        key: SigningKey | None = None,
        expires_in: int = 300,
    ) -> None:
        self.service, self.issuer = service, issuer
        self.users = dict(users)
        self.public = tuple(public)
        self.key = key or make_signing_key()
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://{self.host}/token"

    def grant(self, account: str | None, scope: str) -> tuple[str, str, tuple[str, ...]] | None:
        parsed = _parse_scope(scope)
        if parsed is None:
            return None
        kind, name, actions = parsed
        if account is not None:
            return kind, name, actions
        public = kind == "repository" and any(fnmatch.fnmatch(name, p) for p in self.public)
        return kind, name, tuple(a for a in actions if a == "pull" and public)

    def issue(
        self, account: str | None, granted: Sequence[tuple[str, str, tuple[str, ...]]]
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [
                {"type": kind, "name": name, "actions": list(actions)}
                for kind, name, actions in granted
            ],
        }
        return self.key.sign(claims)

    def _answer(self, authorization: str | None, query: str) -> tuple[int, dict[str, Any]]:
        params = parse_qs(query)
        service = params["service"][0] if "service" in params else None
        scopes = tuple(params.get("scope", []))
        account: str | None = None
        status, body = 200, {}
        granted: list[tuple[str, str, tuple[str, ...]]] = []
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if scheme.lower() != "basic" or self.users.get(user) != password or not user:
                status = 401
            account = user
        if status == 200 and service != self.service:
            status = 400
        if status == 200:
            for scope in scopes:
                grant = self.grant(account, scope)
                if grant is not None and grant[2]:
                    granted.append(grant)
            if account is None and scopes and len(granted) < len(scopes):
                status = 401
        if status == 200:
            token = self.issue(account, granted)
            body = {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            }
        else:
            body = {"errors": [{"code": "UNAUTHORIZED" if status == 401 else "DENIED"}]}
        with self._lock:
            self.requests.append(
                TokenRequest(
                    account if status == 200 else None, service, scopes, status, tuple(granted)
                )
            )
        return status, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                if split.path != "/token":
                    status, body = 404, {"errors": [{"code": "NOT_FOUND"}]}
                else:
                    status, body = server._answer(self.headers.get("Authorization"), split.query)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="patchkeeper-test-token"')
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def run_token_registry(
    root: Path,
    username: str = USERNAME,
    password: str = PASSWORD,
    *,
    public: Sequence[str] = ("public/*",),
    algorithm: Literal["ES256", "RS256"] = "ES256",
) -> Iterator[TokenRegistryServer]:
    """A registry with `auth: token` and the token server it trusts (its certificate is
    the registry's rootcertbundle and goes in every JWT's x5c header)."""
    root.mkdir(parents=True, exist_ok=True)
    service, issuer = "patchkeeper-test-registry", "patchkeeper-test-token-server"
    key = make_signing_key(algorithm)
    bundle = root / "token-ca.pem"
    bundle.write_bytes(key.certificate_pem)
    with TokenServer(
        service=service, issuer=issuer, users={username: password}, public=public, key=key
    ) as tokens:
        auth = {
            "token": {
                "realm": tokens.url,
                "service": service,
                "issuer": issuer,
                "rootcertbundle": str(bundle),
            }
        }
        with run_registry(root, auth) as server:
            yield TokenRegistryServer(
                host=server.host,
                url=server.url,
                root=server.root,
                log_path=server.log_path,
                username=username,
                password=password,
                token_url=tokens.url,
                service=service,
                issuer=issuer,
                public=tuple(public),
                token_requests=tokens.requests,
                rootcertbundle=bundle,
            )


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry needing HTTP Basic credentials (.username "patch", .password
    "keeper-secret")."""
    try:
        with run_htpasswd_registry(tmp_path_factory.mktemp("htpasswd-registry")) as server:
            yield server
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistryServer]:
    """A registry with Docker-Hub-style bearer tokens; `public/*` is anonymously pullable.
    `.token_requests` lists every request its token server answered (session-wide: compare
    lengths before and after)."""
    try:
        with run_token_registry(tmp_path_factory.mktemp("token-registry")) as server:
            yield server
    except RuntimeError as err:
        pytest.fail(str(err))


# --- 3. a flaky reverse proxy ----------------------------------------------------------------

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def relayed(header: str) -> bool:
    """Whether a reverse proxy passes an upstream response header on (it sets its own
    Date and Server, and hop-by-hop headers belong to one connection)."""
    lowered = header.lower()
    return lowered not in HOP_BY_HOP and lowered not in ("date", "server")


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    status: int
    injected: bool  # True: the proxy failed it on purpose


class FlakyProxy(BackgroundHTTPServer):
    """A reverse proxy to `upstream` ("host:port") that answers the first len(failures)
    requests for each path (query ignored) with those statuses and `Retry-After`, then
    forwards. The Host header is passed through, so Location URLs point at the proxy."""

    def __init__(
        self, upstream: str, failures: Sequence[int] = (429, 503), retry_after: str = "0"
    ) -> None:
        self.upstream = upstream.removeprefix("http://").rstrip("/")
        self.failures = tuple(failures)
        self.retry_after = retry_after
        self.requests: list[ProxiedRequest] = []
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://{self.host}"

    def _next_failure(self, path: str) -> int | None:
        with self._lock:
            seen = self._counts[path]
            self._counts[path] += 1
        return self.failures[seen] if seen < len(self.failures) else None

    def _record(self, method: str, path: str, status: int, injected: bool) -> None:
        with self._lock:
            self.requests.append(ProxiedRequest(method, path, status, injected))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                path = urlsplit(self.path).path
                failure = proxy._next_failure(path)
                if failure is not None:
                    payload = json.dumps({"errors": [{"code": "TOOMANYREQUESTS"}]}).encode()
                    self.send_response(failure)
                    self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    proxy._record(self.command, self.path, failure, True)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if not relayed(name):
                            continue
                        if name.lower() == "content-length" and self.command != "HEAD":
                            continue
                        self.send_header(name, value)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    proxy._record(self.command, self.path, response.status, False)
                finally:
                    connection.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def flaky_proxy() -> Iterator[Callable[..., FlakyProxy]]:
    """A factory: flaky_proxy(upstream_host, failures=(429, 503), retry_after="0") starts
    a `FlakyProxy`; all are stopped after the test."""
    with ExitStack() as stack:

        def start(
            upstream: str, failures: Sequence[int] = (429, 503), retry_after: str = "0"
        ) -> FlakyProxy:
            return stack.enter_context(FlakyProxy(upstream, failures, retry_after))

        yield start


# --- 3. a scripted (hostile) registry ---------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer. `drip`: seconds between single body bytes; `silent`: accept the
    request and never answer (until the server stops)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    drip: float | None = None
    silent: bool = False


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # with the query
    headers: Mapping[str, str]


class ScriptedRegistry(BackgroundHTTPServer):
    """A loopback HTTP server answering from `routes`: "path?query" (exact) or "path" ->
    a `Reply`, or a function of the request giving one; anything else is a 404. `serve(repository, tag, image)` scripts the
    distribution API for an image; tests then replace what they want to lie about.
    Every request is recorded in `requests`, headers included."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Callable[[SeenRequest], Reply]] = {"/v2/": Reply(body=b"{}")}
        self.requests: list[SeenRequest] = []
        self._stop = threading.Event()
        super().__init__()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        super().__exit__(*exc)

    def serve(self, repository: str, tag: str, artifact: Image) -> None:
        manifest = Reply(
            body=artifact.manifest_blob,
            headers={
                "Content-Type": artifact.media_type,
                "Docker-Content-Digest": artifact.digest,
            },
        )
        self.routes[f"/v2/{repository}/manifests/{tag}"] = manifest
        self.routes[f"/v2/{repository}/manifests/{artifact.digest}"] = manifest
        for digest, data in artifact.blobs.items():
            self.routes[f"/v2/{repository}/blobs/{digest}"] = Reply(body=data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen = SeenRequest(self.command, self.path, dict(self.headers))
                server.requests.append(seen)
                reply = server.routes.get(self.path) or server.routes.get(
                    urlsplit(self.path).path, Reply(404, b'{"errors":[{"code":"NOT_FOUND"}]}')
                )
                if callable(reply):
                    reply = reply(seen)
                if reply.silent:
                    server._stop.wait(120)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    if reply.drip is None:
                        self.wfile.write(reply.body)
                        return
                    for index in range(len(reply.body)):
                        if server._stop.wait(reply.drip):
                            return
                        self.wfile.write(reply.body[index : index + 1])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def scripted_registry() -> Iterator[Callable[[], ScriptedRegistry]]:
    """A factory of `ScriptedRegistry` servers, all stopped after the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(ScriptedRegistry())


# --- 4. on disk and in the engine ------------------------------------------------------------


def write_oci_layout(directory: Path, artifact: Artifact, tag: str | None = None) -> Path:
    """Write (or add to) an OCI image layout: oci-layout, blobs/sha256/*, and index.json
    with a descriptor for `artifact`, annotated with `tag` as its ref.name. Returns
    `directory`."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in artifact.all_blobs().items():
        target = blobs / digest.removeprefix("sha256:")
        if not target.exists():
            target.write_bytes(data)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = directory / "index.json"
    top: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index_path.exists():
        top = json.loads(index_path.read_text())
    descriptor = artifact.descriptor()
    if tag is not None:
        top["manifests"] = [
            m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
        ]
        descriptor["annotations"] = {REF_NAME_ANNOTATION: tag}
    top["manifests"].append(descriptor)
    index_path.write_text(json.dumps(top, indent=2))
    return directory


def docker_save(client: Any, reference: str, path: Path, *, named: bool = True) -> Path:
    """`docker save reference > path` through the SDK, streamed. On Docker 20.10 that is the
    legacy layout: manifest.json, repositories, <config hex>.json and <id>/{VERSION,json,
    layer.tar} with uncompressed layers, and no oci-layout or index.json."""
    image = client.images.get(reference)
    name: str | bool = False
    if named:
        name = reference if reference in image.tags else bool(image.tags)
    with path.open("wb") as out:
        for chunk in image.save(named=name):
            out.write(chunk)
    return path


def engine_pull(
    client: Any,
    reference: str,
    *,
    auth: tuple[str, str] | None = None,
    platform: str | None = None,
) -> Any:
    """Pull `reference` ("host:port/repo:tag" or "...@sha256:...") into the engine and return
    the docker SDK image. Unlike `client.images.pull`, a failed pull raises RuntimeError
    with the engine's message (e.g. a layer it cannot unpack)."""
    if "@" in reference:
        repository, tag = reference.split("@", 1)
    else:
        repository, colon, tag = reference.rpartition(":")
        if not colon or "/" in tag:
            repository, tag = reference, "latest"
    import docker.errors

    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    try:
        stream = client.api.pull(
            repository, tag, stream=True, decode=True, auth_config=auth_config, platform=platform
        )
        errors = [message["error"] for message in stream if "error" in message]
    except docker.errors.APIError as err:
        errors = [str(err.explanation or err)]
    if errors:
        raise RuntimeError(f"docker pull {reference} failed: {'; '.join(errors)}")
    return client.images.get(reference)


def engine_read(client: Any, reference: str, paths: Iterable[str]) -> dict[str, list[Entry] | None]:
    """What the real engine made of an image: for each absolute path, the tar members
    `docker cp` would give (names relative to the path's parent), or None if absent."""
    import docker.errors

    container = client.containers.create(reference, command=["/tests-oci-never-run"])
    try:
        found: dict[str, list[Entry] | None] = {}
        for path in paths:
            try:
                stream, _ = container.get_archive(path)
            except docker.errors.NotFound:
                found[path] = None
                continue
            found[path] = read_tar(b"".join(stream))
        return found
    finally:
        container.remove(force=True)
