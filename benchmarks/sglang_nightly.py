"""A synthetic nightly shaped like SGLang's docker/Dockerfile, written once and reused.

33 layers bottom first: CUDA-like base layers and apt; the clone + `pip install -e
python[all]` layer holding a depth-1 `.git` (a large pack, `refs/heads/main` only in
`packed-refs`), the `python/sglang` tree (from a real SGLang wheel when one is given,
so the adapter files are the real ones) and a large `dist-packages`; then 21 layers
above it: a DeepEP build under `/sgl-workspace/DeepEP`, pip installs, nsight under
`/opt/nvidia`, `/root/.oh-my-zsh`, an `sgl-router` build, `/usr/local/bin` tools.
File bytes are incompressible, so compressed sizes are real. Entries are written as
Docker's builder writes them: the first layer in directory-walk order, later layers in
byte order of the whole path.

Layers are generated (gzip level 1, streamed to disk) into a data directory with a
JSON index of each layer's entries and the compressed offset after each, so the
sorted-tar bound can be computed without reading them again; the image is pushed once
to the registry under a unique repository, recorded in the same directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

MIB = 1 << 20
SOURCE_ROOT = PurePosixPath("/sgl-workspace/sglang")
CHECKOUT_LAYER = 11
SITE = "usr/local/lib/python3.12/dist-packages"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

# (what, {path prefix: MiB}) bottom first; the checkout layer is built separately.
_BELOW: list[tuple[str, dict[str, float]]] = [
    ("ubuntu base", {"etc": 1, "usr/lib/x86_64-linux-gnu": 40, "usr/bin": 8}),
    ("apt update", {"var/lib/apt/lists": 12}),
    ("cuda runtime", {"usr/local/cuda-13.0/lib64": 300}),
    ("cuda libs", {"usr/local/cuda-13.0/targets/x86_64-linux/lib": 260}),
    ("cudnn", {"usr/lib/x86_64-linux-gnu/cudnn": 180}),
    ("nccl", {"usr/lib/x86_64-linux-gnu/nccl": 70}),
    ("apt python", {"usr/lib/python3.12": 30, "usr/bin/py": 2}),
    ("apt build tools", {"usr/include": 20, "usr/lib/gcc": 40}),
    ("pip upgrade", {f"{SITE}/pip": 8}),
    ("env", {"etc/profile.d": 0.01}),
    ("workdir", {"sgl-workspace/.keep": 0.001}),
]
_ABOVE: list[tuple[str, dict[str, float]]] = [
    ("DeepEP build", {"sgl-workspace/DeepEP/build": 45}),
    ("pip flashinfer", {f"{SITE}/flashinfer": 90}),
    ("nsight systems", {"opt/nvidia/nsight-systems": 60}),
    ("nsight compute", {"opt/nvidia/nsight-compute": 45}),
    ("oh-my-zsh", {"root/.oh-my-zsh": 6}),
    ("sgl-router build", {"sgl-workspace/sglang/sgl-router/target": 45}),
    ("local bin tools", {"usr/local/bin": 30}),
    ("pip deep_gemm", {f"{SITE}/deep_gemm": 25}),
    ("pip sgl-kernel", {f"{SITE}/sgl_kernel": 70}),
    ("apt dev tools", {"usr/lib/x86_64-linux-gnu/dev": 35, "usr/bin/dev": 5}),
    ("pip triton", {f"{SITE}/triton": 40}),
    ("root cache", {"root/.cache/pip": 10}),
    ("etc tweaks", {"etc/ld.so.conf.d": 0.01}),
    ("pip nixl", {f"{SITE}/nixl": 20}),
    ("mooncake", {f"{SITE}/mooncake": 15, "usr/local/lib/libmooncake": 5}),
    ("rust toolchain", {"root/.cargo": 20, "root/.rustup": 20}),
    ("gdrcopy", {"opt/gdrcopy": 5}),
    ("nvshmem", {"opt/nvshmem": 25}),
    ("pip cleanup", {f"{SITE}/zz_patch": 3}),
    ("motd", {"etc/motd.d": 0.01}),
    ("entrypoint", {"usr/local/bin/entry": 0.01}),
]


@dataclass(frozen=True)
class LayerInfo:
    what: str
    path: Path
    digest: str
    diff_id: str
    size: int
    entries: list[tuple[str, int]]  # (image path, compressed offset after the entry)


@dataclass(frozen=True)
class Nightly:
    layers: list[LayerInfo]
    config: bytes
    manifest: bytes
    reference: str  # registry/repository:tag
    commit: str
    expected: dict[str, str]  # image path -> sha256 of its content

    @property
    def image_bytes(self) -> int:
        return sum(lay.size for lay in self.layers)


class _Random(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.left)
        buffer[:size] = os.urandom(size)
        self.left -= size
        return size


class _Hashing(io.RawIOBase):
    """A writer that hashes what passes through (the uncompressed tar: the diff_id)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.hash = inner, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.inner.write(data)
        return len(data)


def _sizes(prefix: str, mib: float) -> dict[str, int | bytes]:
    """Incompressible files under `prefix` adding up to `mib`, at most 32 MiB each."""
    total = int(mib * MIB)
    count = max(1, -(-total // (32 * MIB)))
    return {f"{prefix}/part-{n:03d}.bin": total // count for n in range(count)}


def _walk_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def _with_dirs(
    files: Mapping[str, int | bytes], walk: bool
) -> list[tuple[str, int | bytes | None]]:
    entries: dict[str, int | bytes | None] = {}
    for path, content in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), None)
        entries[path] = content
    order = sorted(entries, key=_walk_key if walk else str)
    return [(path, entries[path]) for path in order]


def _write_layer(
    target: Path, what: str, files: Mapping[str, int | bytes], walk: bool
) -> LayerInfo:
    raw = target.open("wb")
    entries: list[tuple[str, int]] = []
    with raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        hashing = _Hashing(gz)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for path, content in _with_dirs(files, walk):
                info = tarfile.TarInfo(path)
                info.mtime = 1_700_000_000
                if content is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    data = io.BytesIO(content) if isinstance(content, bytes) else None
                    info.size = len(content) if isinstance(content, bytes) else content
                    info.mode = 0o644
                    stream = data or io.BufferedReader(_Random(info.size), 1 << 20)
                    tar.addfile(info, stream)
                entries.append(("/" + path, raw.tell()))
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return LayerInfo(
        what,
        target,
        "sha256:" + digest.hexdigest(),
        "sha256:" + hashing.hash.hexdigest(),
        target.stat().st_size,
        entries,
    )


def _python_tree(wheel: Path | None) -> dict[str, int | bytes]:
    """`python/sglang` from a real wheel (its real adapter files), else a small stand-in."""
    root = str(SOURCE_ROOT).lstrip("/")
    if wheel is None:
        anthropic = "python/sglang/srt/entrypoints/anthropic"
        return {
            f"{root}/{anthropic}/protocol.py": b"# protocol\n" * 400,
            f"{root}/{anthropic}/serving.py": b"# serving\n" * 3000,
            f"{root}/python/sglang/version.py": b"__version__ = '0'\n",
        }
    files: dict[str, int | bytes] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith("sglang/") and not name.endswith("/"):
                files[f"{root}/python/{name}"] = archive.read(name)
    files[f"{root}/python/sglang.egg-info/PKG-INFO"] = b"Name: sglang\n"
    return files


def _checkout_files(commit: str, wheel: Path | None) -> dict[str, int | bytes]:
    root = str(SOURCE_ROOT).lstrip("/")
    files: dict[str, int | bytes] = {
        f"{root}/.git/HEAD": b"ref: refs/heads/main\n",
        f"{root}/.git/config": b'[remote "origin"]\n\turl = https://github.com/sgl-project/sglang\n',
        f"{root}/.git/description": b"Unnamed repository\n",
        f"{root}/.git/index": 300_000,
        f"{root}/.git/objects/pack/pack-{commit}.pack": 37 * MIB,
        f"{root}/.git/objects/pack/pack-{commit}.idx": 2 * MIB,
        f"{root}/.git/packed-refs": f"# pack-refs with: peeled fully-peeled sorted\n{commit} "
        "refs/heads/main\n".encode(),
        f"{root}/.git/shallow": f"{commit}\n".encode(),
        f"{root}/docker/Dockerfile": 20_000,
        f"{root}/sgl-kernel/csrc/all.cu": 3 * MIB,
        f"{root}/test/srt/all_tests.py": 2 * MIB,
    }
    files.update(_python_tree(wheel))
    for package, mib in (
        ("torch", 420),
        ("nvidia", 150),
        ("flashinfer_python", 40),
        ("xgrammar", 10),
    ):
        files.update(_sizes(f"{SITE}/{package}", mib))
    return files


def _config(layers: list[LayerInfo], commit: str) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-06-21T03:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": str(SOURCE_ROOT),
            "Labels": {"org.opencontainers.image.revision": commit},
        },
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": [{"created_by": lay.what} for lay in layers],
    }
    return json.dumps(config, separators=(",", ":")).encode()


def _manifest(layers: list[LayerInfo], config: bytes) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": lay.digest, "size": lay.size} for lay in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def _push(
    registry: str,
    repository: str,
    tag: str,
    nightly_layers: list[LayerInfo],
    config: bytes,
    manifest: bytes,
) -> None:
    with httpx.Client(base_url=f"http://{registry}", timeout=600) as http:
        blobs: list[tuple[str, Any]] = [(lay.digest, lay.path) for lay in nightly_layers]
        blobs.append(("sha256:" + hashlib.sha256(config).hexdigest(), config))
        for digest, content in blobs:
            if http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
                continue
            started = http.post(f"/v2/{repository}/blobs/uploads/")
            started.raise_for_status()
            location = httpx.URL(started.headers["location"])
            url = location if location.is_absolute_url else http.base_url.join(location)
            body = content if isinstance(content, bytes) else content.open("rb")
            try:
                http.put(
                    url.copy_merge_params({"digest": digest}),
                    content=body,
                    headers={"Content-Type": "application/octet-stream"},
                ).raise_for_status()
            finally:
                if not isinstance(body, bytes):
                    body.close()
        http.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ).raise_for_status()


def _expected(layers: Iterable[LayerInfo], files: Mapping[str, int | bytes]) -> dict[str, str]:
    return {
        "/" + path: hashlib.sha256(content).hexdigest()
        for path, content in files.items()
        if isinstance(content, bytes)
    }


def prepare(data: Path, registry: str, wheel: Path | None) -> Nightly:
    """The nightly under `data`: generated and pushed on the first call, reused after."""
    data.mkdir(parents=True, exist_ok=True)
    state = data / "nightly.json"
    if state.exists():
        saved = json.loads(state.read_text())
        if saved["registry"] == registry:
            layers = [
                LayerInfo(
                    **{
                        **lay,
                        "path": Path(lay["path"]),
                        "entries": [tuple(e) for e in lay["entries"]],
                    }
                )
                for lay in saved["layers"]
            ]
            return Nightly(
                layers,
                (data / "config.json").read_bytes(),
                (data / "manifest.json").read_bytes(),
                saved["reference"],
                saved["commit"],
                saved["expected"],
            )
    commit = secrets.token_hex(20)
    layers: list[LayerInfo] = []
    for index, (what, spec) in enumerate(_BELOW):
        files: dict[str, int | bytes] = {}
        for prefix, mib in spec.items():
            files.update(_sizes(prefix, mib))
        layers.append(_write_layer(data / f"layer-{index:02d}.tar.gz", what, files, index == 0))
    checkout = _checkout_files(commit, wheel)
    layers.append(
        _write_layer(
            data / f"layer-{CHECKOUT_LAYER:02d}.tar.gz", "clone + pip install", checkout, False
        )
    )
    for offset, (what, spec) in enumerate(_ABOVE):
        files = {}
        for prefix, mib in spec.items():
            files.update(_sizes(prefix, mib))
        index = CHECKOUT_LAYER + 1 + offset
        layers.append(_write_layer(data / f"layer-{index:02d}.tar.gz", what, files, False))
    config = _config(layers, commit)
    manifest = _manifest(layers, config)
    repository = f"pk-bench/sglang-nightly-{secrets.token_hex(4)}"
    tag = f"nightly-dev-cu13-20260621-{commit[:8]}"
    _push(registry, repository, tag, layers, config, manifest)
    (data / "config.json").write_bytes(config)
    (data / "manifest.json").write_bytes(manifest)
    expected = _expected(layers, checkout)
    reference = f"{registry}/{repository}:{tag}"
    state.write_text(
        json.dumps(
            {
                "registry": registry,
                "reference": reference,
                "commit": commit,
                "expected": expected,
                "layers": [{**lay.__dict__, "path": str(lay.path)} for lay in layers],
            }
        )
    )
    return Nightly(layers, config, manifest, reference, commit, expected)


def write_layout(nightly: Nightly, directory: Path, tag: str) -> Path:
    """An OCI image layout of the nightly, its blobs hardlinked from the data directory."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for lay in nightly.layers:
        target = blobs / lay.digest.removeprefix("sha256:")
        if not target.exists():
            os.link(lay.path, target)
    for data in (nightly.config, nightly.manifest):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + hashlib.sha256(nightly.manifest).hexdigest(),
        "size": len(nightly.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (directory / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [descriptor]})
    )
    return directory
