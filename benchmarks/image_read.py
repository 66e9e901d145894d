"""Benchmark: what does it cost to read the few files patchkeeper needs from a nightly image?

To identify a nightly (which upstream commit it was built from) and to port PRs onto it,
patchkeeper reads a handful of small files from the image: the source checkout's
`.git/HEAD`, `.git/packed-refs` and `.git/refs/heads/main`, a couple of Python files a PR
touches, and files a PR adds (absent from the image). A real SGLang nightly is tens of
GiB, almost all of it CUDA and wheels in layers that have nothing to do with those files.

This script builds a synthetic image shaped like one (a large incompressible "CUDA" base
layer, a mid-stack layer holding the `/sgl-workspace/sglang` checkout, and several large
layers above it), pushes it to the test registry ($PATCHKEEPER_TEST_REGISTRY) with the
`tests.oci` helpers, and measures, side by side in one run:

  (a)  patchkeeper's registry path, cold cache: `CachedSource(RegistrySource())`, one
       `resolve` then ONE `read` of every path. Layers are streamed top-down and
       abandoned once every path is settled, so it should fetch only the layers at or
       above the checkout's layer, never the base.
  (a') the same with a new source object on the same (now warm) cache: no layer bytes.
  (b)  the classic way: `docker pull` into the engine, then copy the files out of a
       created (never started) container with `get_archive`.
  (c)  patchkeeper's engine path with the image already pulled: `EngineSource()`.

Registry bytes are measured, not assumed: a byte-counting reverse proxy sits in front of
the registry, and (a), (a'), (b) and (c) all go through it (the engine treats
127.0.0.1:<port> as an insecure loopback registry). (a) and (a') are also run straight
against the registry, where `accounting()` (compressed bytes the layer reader pulled) is
the only measure; through the proxy, both measures are printed side by side.

Targets, reported as "TARGET MISSED" lines (the exit status is 0 unless something errors
or a path returns the wrong content):

  (a)  fetches no more than the layers at or above the checkout's layer;
  (a') fetches 0 layer bytes;
  (c)  sends nothing to the registry.

Run: .venv/bin/python benchmarks/image_read.py [--base-mib N] [--upper-layers N] ...
(with `source /var/lib/patchkeeper-ci/env` first, for DOCKER_HOST and the registry).

`--shape sglang --data-dir DIR [--wheel sglang-*.whl]` measures instead an image shaped
like a real SGLang nightly (`sglang_nightly`: 33 layers, over 2 GB compressed,
generated and pushed once into DIR, reused by later runs), read as `sync` reads it:
the checkout's git metadata and the adapter's files in one request, then the commit.
Side by side: patchkeeper cold and warm (through the counting proxy), regctl's bound
(every layer at or above the checkout, in full), the sorted-tar bound (per layer, the
compressed bytes up to the last entry sorting at or before the last requested path),
and `docker pull` (every layer; not pulled here, as the vfs engine would copy the whole
root filesystem once per layer). Also checks that an OCI layout of the same blobs
gives identical files. Targets: cold <= 1.05x the sorted-tar bound, every layer
streamed at most once and never past its size, warm 0 layer bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import os
import random
import re
import secrets
import sys
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tests.oci`

from benchmarks import sglang_nightly
from patchkeeper.image import order
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.identity import identify
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage
from patchkeeper.image.registry import RegistrySource
from tests.oci import HOP_BY_HOP, BackgroundHTTPServer, Image, Layer, layer, push, relayed, tree

MIB = 1 << 20
SOURCE_ROOT = PurePosixPath("/sgl-workspace/sglang")
ANTHROPIC = PurePosixPath("python/sglang/srt/entrypoints/anthropic")
PR_ADDS = PurePosixPath("python/sglang/srt/entrypoints/anthropic/tool_streaming.py")
REVISION_LABEL = "org.opencontainers.image.revision"
CHUNK = 1 << 16
_BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")
_MANIFEST_PATH = re.compile(r"^/v2/.+/manifests/[^/]+$")

Files = dict[PurePosixPath, bytes | None]


# --- a byte-counting reverse proxy ---------------------------------------------------------


@dataclass
class Traffic:
    """Response-body bytes the proxy delivered, by what was asked for."""

    requests: int = 0
    by_key: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total(self) -> int:
        return sum(self.by_key.values())

    def blob_bytes(self, digests: Sequence[str]) -> int:
        return sum(self.by_key.get(digest, 0) for digest in digests)


class CountingProxy(BackgroundHTTPServer):
    """A streaming reverse proxy to `upstream` that counts the response-body bytes it wrote.

    Blobs are keyed by digest, manifests as "manifest", anything else ("/v2/" pings) as
    "other". Responses are streamed in 64 KiB chunks, so a client that abandons a blob
    stops the transfer: at most what the loopback socket buffers hold is counted beyond
    what the client read. (`tests.oci.FlakyProxy` buffers whole responses and counts only
    requests, so it cannot measure partial reads.)"""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._traffic = Traffic()
        self._lock = threading.Lock()
        super().__init__()

    def take(self) -> Traffic:
        """The traffic since the last call, and start counting afresh."""
        with self._lock:
            taken, self._traffic = self._traffic, Traffic()
        return taken

    def _count(self, key: str, size: int) -> None:
        with self._lock:
            self._traffic.by_key[key] += size

    def _request_seen(self) -> None:
        with self._lock:
            self._traffic.requests += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                proxy._request_seen()
                path = urlsplit(self.path).path
                blob = _BLOB_PATH.match(path)
                key = blob[1] if blob else "manifest" if _MANIFEST_PATH.match(path) else "other"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=120)
                try:
                    # Header by header: the engine sends one Accept line per media type.
                    upstream.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            upstream.putheader(name, value)
                    if body is not None:
                        upstream.putheader("Content-Length", str(len(body)))
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    sized = response.getheader("Content-Length") is not None
                    data = b"" if sized or self.command == "HEAD" else response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if not relayed(name):
                            continue
                        if name.lower() == "content-length" and not sized:
                            continue
                        self.send_header(name, value)
                    if not sized and self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if not sized:
                        self.wfile.write(data)
                        proxy._count(key, len(data))
                        return
                    while chunk := response.read(CHUNK):
                        self.wfile.write(chunk)
                        proxy._count(key, len(chunk))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client abandoned the response
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- the synthetic nightly -----------------------------------------------------------------


@dataclass(frozen=True)
class Nightly:
    image: Image
    names: list[str]  # one per layer, bottom first
    source_layer: int  # index of the layer holding the checkout
    commit: str
    repository: str  # without registry
    tag: str
    expected: Files  # what each requested path must read as

    @property
    def layer_bytes(self) -> int:
        return sum(lay.size for lay in self.image.layers)

    def name_of(self, digest: str) -> str:
        for name, lay in zip(self.names, self.image.layers, strict=True):
            if lay.digest == digest:
                return name
        return digest[:19]

    @property
    def digests(self) -> list[str]:
        return [lay.digest for lay in self.image.layers]

    @property
    def at_or_above_source(self) -> int:
        return sum(lay.size for lay in self.image.layers[self.source_layer :])


def requested_paths() -> list[PurePosixPath]:
    return [
        SOURCE_ROOT / ".git/HEAD",
        SOURCE_ROOT / ".git/packed-refs",
        SOURCE_ROOT / ".git/refs/heads/main",
        SOURCE_ROOT / ANTHROPIC / "protocol.py",
        SOURCE_ROOT / ANTHROPIC / "serving.py",
        SOURCE_ROOT / PR_ADDS,
    ]


def _blobs_layer(prefix: str, total: int, files: int) -> Layer:
    """`files` files of incompressible bytes adding up to `total`."""
    sizes = [total // files] * files
    sizes[-1] += total - sum(sizes)
    return layer(tree({f"{prefix}/part-{n:05d}.so": os.urandom(s) for n, s in enumerate(sizes)}))


def _python_source(rng: random.Random, module: str) -> str:
    lines = [
        f'"""{module}: synthetic SGLang module."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    for n in range(rng.randint(4, 24)):
        lines += [f"def f_{n}(x: int) -> int:", f"    return x * {rng.randint(2, 99)} + {n}", ""]
    return "\n".join(lines) + "\n"


def _source_layer(commit: str, py_files: int) -> tuple[Layer, Files]:
    rng = random.Random(commit)
    root = str(SOURCE_ROOT).lstrip("/")
    protocol = _python_source(rng, "anthropic protocol").encode()
    serving = _python_source(rng, "anthropic serving").encode()
    files: dict[str, bytes | str] = {
        f"{root}/.git/HEAD": "ref: refs/heads/main\n",
        f"{root}/.git/config": '[remote "origin"]\n\turl = https://github.com/sgl-project/sglang\n',
        f"{root}/.git/refs/heads/main": commit + "\n",
        f"{root}/{ANTHROPIC}/__init__.py": "",
        f"{root}/{ANTHROPIC}/protocol.py": protocol,
        f"{root}/{ANTHROPIC}/serving.py": serving,
    }
    packages = ["srt/layers", "srt/models", "srt/managers", "srt/mem_cache", "lang", "test"]
    for n in range(max(0, py_files - 3)):
        package = f"{packages[n % len(packages)]}/group_{n // 100:02d}"
        files[f"{root}/python/sglang/{package}/module_{n:04d}.py"] = _python_source(rng, str(n))
    expected: Files = {
        SOURCE_ROOT / ".git/HEAD": b"ref: refs/heads/main\n",
        SOURCE_ROOT / ".git/packed-refs": None,
        SOURCE_ROOT / ".git/refs/heads/main": (commit + "\n").encode(),
        SOURCE_ROOT / ANTHROPIC / "protocol.py": protocol,
        SOURCE_ROOT / ANTHROPIC / "serving.py": serving,
        SOURCE_ROOT / PR_ADDS: None,
    }
    return layer(tree(files)), expected


def build_nightly(args: argparse.Namespace) -> Nightly:
    commit = secrets.token_hex(20)
    base = _blobs_layer("usr/local/cuda/lib64", args.base_mib * MIB, args.base_files)
    source, expected = _source_layer(commit, args.py_files)
    uppers = [
        _blobs_layer(
            f"usr/local/lib/python3.12/dist-packages/wheel_{n}",
            args.upper_mib * MIB,
            args.upper_files,
        )
        for n in range(args.upper_layers)
    ]
    image = Image(
        [base, source, *uppers],
        labels={REVISION_LABEL: commit, "org.opencontainers.image.source": "sglang-bench"},
        cmd=["/bin/sh"],
        working_dir=str(SOURCE_ROOT),
    )
    return Nightly(
        image=image,
        names=["base (cuda)", "sglang source", *(f"upper {n + 1}" for n in range(len(uppers)))],
        source_layer=1,
        commit=commit,
        repository=f"pk-bench/sglang-{secrets.token_hex(4)}",
        tag=f"nightly-dev-cu13-20260621-{commit[:8]}",
        expected=expected,
    )


# --- the measured paths --------------------------------------------------------------------


@dataclass
class Result:
    label: str
    wall_s: float
    files: Files
    traffic: Traffic | None = None  # None: did not go through the proxy
    accounting: dict[str, Any] | None = None
    detail: str = ""


@contextlib.contextmanager
def cache_dir(path: Path) -> Iterator[None]:
    previous = os.environ.get("PATCHKEEPER_CACHE_DIR")
    os.environ["PATCHKEEPER_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PATCHKEEPER_CACHE_DIR", None)
        else:
            os.environ["PATCHKEEPER_CACHE_DIR"] = previous


def _contents(found: dict[PurePosixPath, ImageFile | None]) -> Files:
    return {path: None if file is None else file.content for path, file in found.items()}


def registry_read(
    label: str, ref: str, cache: Path, paths: list[PurePosixPath], proxy: CountingProxy | None
) -> Result:
    """(a)/(a'): a new CachedSource(RegistrySource()) on `cache`; resolve, then ONE read."""
    with cache_dir(cache):
        if proxy:
            proxy.take()
        source = CachedSource(RegistrySource())
        started = time.perf_counter()
        image: ResolvedImage = source.resolve(ImageRef.parse(ref))
        resolved = time.perf_counter()
        found = source.read(image, paths)
        finished = time.perf_counter()
        return Result(
            label,
            finished - started,
            _contents(found),
            traffic=proxy.take() if proxy else None,
            accounting=source.accounting(),
            detail=f"resolve {resolved - started:.2f} s + read {finished - resolved:.2f} s",
        )


def _archive_file(chunks: Iterator[bytes]) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member else None
        if handle is None:
            raise RuntimeError("get_archive returned no regular file")
        return handle.read()


def pull_and_copy(
    client: Any, ref: str, paths: list[PurePosixPath], proxy: CountingProxy
) -> Result:
    """(b): `docker pull` through the proxy, then get_archive per path from a container."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref, force=True)
    repository, tag = ref.rsplit(":", 1)
    proxy.take()
    started = time.perf_counter()
    client.images.pull(repository, tag=tag)
    pulled = time.perf_counter()
    container = client.containers.create(ref, command=["x"])
    created = time.perf_counter()
    found: Files = {}
    try:
        for path in paths:
            try:
                chunks, _ = container.get_archive(str(path))
            except docker.errors.NotFound:
                found[path] = None
                continue
            found[path] = _archive_file(chunks)
    finally:
        container.remove(force=True)
    finished = time.perf_counter()
    return Result(
        "(b) docker pull + copy-out",
        finished - started,
        found,
        traffic=proxy.take(),
        detail=(
            f"pull {pulled - started:.2f} s + create {created - pulled:.2f} s"
            f" + copy/remove {finished - created:.2f} s"
        ),
    )


def engine_read(ref: str, paths: list[PurePosixPath], proxy: CountingProxy) -> Result:
    """(c): EngineSource on the already-pulled image."""
    proxy.take()
    source = EngineSource()
    started = time.perf_counter()
    image = source.resolve(ImageRef.parse(ref))
    resolved = time.perf_counter()
    found = source.read(image, paths)
    finished = time.perf_counter()
    return Result(
        "(c) engine, image present",
        finished - started,
        _contents(found),
        traffic=proxy.take(),
        accounting=source.accounting(),
        detail=f"resolve {resolved - started:.2f} s + read {finished - resolved:.2f} s",
    )


# --- reporting -----------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / MIB:,.2f} MiB"


def _check_contents(result: Result, nightly: Nightly) -> None:
    if result.files != nightly.expected:
        wrong = [str(p) for p, want in nightly.expected.items() if result.files.get(p) != want]
        raise RuntimeError(f"{result.label}: wrong content for {', '.join(wrong)}")


def print_table(results: list[Result], nightly: Nightly) -> None:
    whole = nightly.layer_bytes
    header = ("path", "wall s", "registry bytes", "ratio", "accounting()", "requests")
    rows = []
    for result in results:
        measured = result.traffic.total if result.traffic else None
        fetched = result.accounting.get("fetched_bytes") if result.accounting else None
        shown = measured if measured is not None else fetched
        rows.append(
            (
                result.label,
                f"{result.wall_s:.2f}",
                "-" if measured is None else f"{measured:,}",
                "-" if shown is None else f"{shown / whole:.4f}",
                "-" if fetched is None else f"{fetched:,}",
                "-" if result.traffic is None else str(result.traffic.requests),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))
    print()
    print("registry bytes: response bodies through the counting proxy ('-': not proxied);")
    print("ratio: registry bytes (else accounting fetched_bytes) / all compressed layers;")
    print("accounting(): the source's own fetched_bytes (compressed layer bytes it read).")
    for result in results:
        if result.detail:
            print(f"  {result.label}: {result.detail}")


def print_layers(result: Result, nightly: Nightly) -> None:
    accounting = result.accounting or {}
    fetched = {layer["digest"]: layer["fetched"] for layer in accounting.get("layers", [])}
    traffic = result.traffic or Traffic()
    print(f"layers read by {result.label} (bottom first):")
    for index, (name, lay) in enumerate(zip(nightly.names, nightly.image.layers, strict=True)):
        got, proxied = fetched.get(lay.digest, 0), traffic.by_key.get(lay.digest, 0)
        marker = "read" if got or proxied else "not read"
        source = "  <- checkout" if index == nightly.source_layer else ""
        print(
            f"  {index}  {name:<14} {lay.digest[7:19]}  size {lay.size:>12,}"
            f"  accounting {got:>12,}  proxy {proxied:>12,}  {marker}{source}"
        )
    image_bytes = accounting.get("image_bytes")
    agrees = "agrees" if image_bytes == nightly.layer_bytes else "DISAGREES"
    print(f"  accounting image_bytes {image_bytes:,} ({agrees} with the manifest's layer sizes)")
    config = traffic.by_key.get(nightly.image.config_digest, 0)
    print(
        f"  + manifest {traffic.by_key.get('manifest', 0):,} B, config {config:,} B,"
        f" other {traffic.by_key.get('other', 0):,} B"
    )


def check_targets(results: dict[str, Result], nightly: Nightly) -> list[str]:
    missed: list[str] = []
    bound = nightly.at_or_above_source
    digests = nightly.digests
    above = digests[nightly.source_layer :]
    print()
    print(
        f"targets (layers at or above the checkout's layer: {bound:,} B = {_mib(bound)}, "
        f"{bound / nightly.layer_bytes:.4f} of the image):"
    )
    for key in ("a", "a-direct"):
        result = results[key]
        fetched = int((result.accounting or {}).get("fetched_bytes", 0))
        measures = [("accounting", fetched)]
        if result.traffic is not None:
            measures.append(("proxy layer bytes", result.traffic.blob_bytes(digests)))
            below = result.traffic.blob_bytes(digests) - result.traffic.blob_bytes(above)
            measures.append(("proxy bytes below the checkout", below))
        for what, size in measures:
            limit = 0 if "below" in what else bound
            held = size <= limit
            print(f"  {result.label}: {what} {size:,} <= {limit:,}: {'ok' if held else 'NO'}")
            if not held:
                missed.append(f"{result.label}: {what} {size:,} B > {limit:,} B")
    for key in ("a-warm", "a-direct-warm"):
        result = results[key]
        fetched = int((result.accounting or {}).get("fetched_bytes", 0))
        measures = [("accounting", fetched)]
        if result.traffic is not None:
            measures.append(("proxy layer bytes", result.traffic.blob_bytes(digests)))
        for what, size in measures:
            print(f"  {result.label}: {what} {size:,} == 0: {'ok' if size == 0 else 'NO'}")
            if size:
                missed.append(f"{result.label}: {what} {size:,} B, not 0")
        if result.traffic is not None:
            print(
                f"    (resolve still asks the registry for the tag: {result.traffic.total:,} B"
                f" of manifest + config in {result.traffic.requests} requests)"
            )
    engine = results["c"]
    assert engine.traffic is not None
    sent = engine.traffic.total
    print(
        f"  {engine.label}: proxy bytes {sent:,} in {engine.traffic.requests} requests == 0:"
        f" {'ok' if sent == 0 and engine.traffic.requests == 0 else 'NO'}"
    )
    if sent or engine.traffic.requests:
        missed.append(f"{engine.label}: {sent:,} B in {engine.traffic.requests} requests, not 0")
    pulled = results["b"].traffic
    assert pulled is not None
    print(
        f"  (b) for reference: pulled {pulled.blob_bytes(digests):,} of {nightly.layer_bytes:,}"
        f" compressed layer bytes ({pulled.total:,} B in all, {pulled.requests} requests)"
    )
    return missed


# --- main ----------------------------------------------------------------------------------


def _sync_read(
    ref: str, cache: Path, paths: list[PurePosixPath], proxy: CountingProxy | None
) -> tuple[Result, str]:
    """What sync reads: one request for the git metadata and the files, then the commit."""
    with cache_dir(cache):
        if proxy:
            proxy.take()
        source = CachedSource(RegistrySource())
        started = time.perf_counter()
        image = source.resolve(ImageRef.parse(ref))
        found = source.read(image, paths, [SOURCE_ROOT / ".git"])
        commit = identify(source, image, SOURCE_ROOT, files=found).commit
        finished = time.perf_counter()
        files = {p: found[p] for p in paths}
        result = Result(
            "",
            finished - started,
            _contents(files),
            proxy.take() if proxy else None,
            source.accounting(),
        )
        return result, commit


def _sorted_bound(nightly: sglang_nightly.Nightly, paths: list[PurePosixPath]) -> int:
    """Per layer at or above the checkout: compressed bytes through the last entry that
    sorts (byte order) at or before the last thing requested."""
    limits = [order.bound(str(p), False) for p in paths]
    limits.append(order.bound(str(SOURCE_ROOT / ".git"), True))
    limit = order.highest(limits)["byte"]
    total = 0
    for lay in nightly.layers[sglang_nightly.CHECKOUT_LAYER :]:
        within = [offset for path, offset in lay.entries if path.encode() <= limit]
        total += within[-1] if within else 0
    return total


def sglang_main(args: argparse.Namespace) -> int:
    """The SGLang-shaped nightly, side by side (see the module docstring)."""
    started = time.perf_counter()
    nightly = sglang_nightly.prepare(args.data_dir, args.registry, args.wheel)
    whole = nightly.image_bytes
    print(
        f"image {nightly.reference}: {len(nightly.layers)} layers, {_mib(whole)} compressed"
        f" (ready in {time.perf_counter() - started:.1f} s)"
    )
    paths = [
        SOURCE_ROOT / ANTHROPIC / "protocol.py",
        SOURCE_ROOT / ANTHROPIC / "serving.py",
        SOURCE_ROOT / PR_ADDS,
    ]
    expected = {p: nightly.expected.get(str(p)) for p in paths}
    missed: list[str] = []
    with CountingProxy(args.registry) as proxy, tempfile.TemporaryDirectory(prefix="pk-") as tmp:
        ref = nightly.reference.replace(args.registry, proxy.host, 1)
        cold, commit = _sync_read(ref, Path(tmp, "cache"), paths, proxy)
        warm, warm_commit = _sync_read(ref, Path(tmp, "cache"), paths, proxy)
        tag = nightly.reference.rsplit(":", 1)[1]
        layout = LayoutSource(sglang_nightly.write_layout(nightly, Path(tmp, "layout"), tag))
        image = layout.resolve(ImageRef("layout", tag))
        from_layout = _contents(layout.read(image, paths))
    for label, result, seen in (("cold", cold, commit), ("warm", warm, warm_commit)):
        got = {p: hashlib.sha256(c).hexdigest() if c else None for p, c in result.files.items()}
        if got != expected or seen != nightly.commit:
            raise RuntimeError(f"{label}: wrong files or commit {seen}")
    if from_layout != cold.files:
        raise RuntimeError("the OCI layout read different files than the registry")
    assert cold.traffic is not None and warm.traffic is not None and cold.accounting
    digests = [lay.digest for lay in nightly.layers]
    regctl = sum(lay.size for lay in nightly.layers[sglang_nightly.CHECKOUT_LAYER :])
    bound = _sorted_bound(nightly, paths)
    cold_bytes = cold.traffic.blob_bytes(digests)
    rows = [
        ("docker pull (every layer; not pulled here)", whole),
        ("regctl's bound (layers at or above the checkout)", regctl),
        ("patchkeeper, cold (proxy: layer bytes)", cold_bytes),
        ("patchkeeper, cold (its own accounting)", int(cold.accounting["fetched_bytes"])),
        ("sorted-tar bound", bound),
        ("patchkeeper, warm (proxy: layer bytes)", warm.traffic.blob_bytes(digests)),
    ]
    print()
    print("| | MiB | of the image |\n|---|---|---|")
    for label, size in rows:
        print(f"| {label} | {size / MIB:,.1f} | {size / whole:.3f} |")
    print(
        f"\ncold {cold.wall_s:.1f} s, warm {warm.wall_s:.1f} s; cold/bound {cold_bytes / bound:.3f}"
    )
    print("layers (bottom first): size / fetched / streams")
    per_layer = {e["digest"]: e for e in cold.accounting["layers"]}
    for index, lay in enumerate(nightly.layers):
        entry = per_layer[lay.digest]
        mark = "  <- checkout" if index == sglang_nightly.CHECKOUT_LAYER else ""
        print(
            f"  {index:2d} {lay.what:<22} {lay.size / MIB:9.1f} {entry['fetched'] / MIB:9.1f}"
            f" {entry['streams']}{mark}"
        )
        if entry["streams"] > 1 or entry["fetched"] > lay.size:
            missed.append(f"layer {index}: {entry['streams']} streams, {entry['fetched']} bytes")
    if cold_bytes > 1.05 * bound:
        missed.append(f"cold {cold_bytes:,} B > 1.05 x sorted-tar bound {bound:,} B")
    if warm.traffic.blob_bytes(digests):
        missed.append("warm read fetched layer bytes")
    for line in missed:
        print(f"TARGET MISSED: {line}")
    print("all targets met" if not missed else "")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", default=os.environ.get("PATCHKEEPER_TEST_REGISTRY"))
    parser.add_argument("--shape", choices=["small", "sglang"], default="small")
    parser.add_argument("--data-dir", type=Path, help="sglang shape: where layers are kept")
    parser.add_argument("--wheel", type=Path, help="sglang shape: a real SGLang wheel")
    parser.add_argument("--base-mib", type=int, default=256, help="base layer size")
    parser.add_argument("--base-files", type=int, default=4, help="files in the base layer")
    parser.add_argument("--py-files", type=int, default=2000, help=".py files in the checkout")
    parser.add_argument("--upper-layers", type=int, default=3, help="layers above the checkout")
    parser.add_argument("--upper-mib", type=int, default=64, help="size of each upper layer")
    parser.add_argument("--upper-files", type=int, default=2, help="files in each upper layer")
    args = parser.parse_args(argv)
    if not args.registry:
        parser.error("no --registry and no PATCHKEEPER_TEST_REGISTRY")
    if args.shape == "sglang" and args.data_dir is None:
        parser.error("--shape sglang needs --data-dir (generated layers are kept there)")
    if (
        min(args.base_mib, args.base_files, args.upper_mib, args.upper_files) < 1
        or args.upper_layers < 0
    ):
        parser.error("sizes and counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.shape == "sglang":
        return sglang_main(args)
    run_started = time.perf_counter()
    client = docker.from_env()
    client.ping()

    started = time.perf_counter()
    nightly = build_nightly(args)
    built = time.perf_counter()
    digest = push(args.registry, nightly.repository, nightly.tag, nightly.image)
    pushed = time.perf_counter()
    print(f"image {args.registry}/{nightly.repository}:{nightly.tag}")
    print(f"  manifest {digest}, commit {nightly.commit}")
    print(
        f"  {len(nightly.image.layers)} layers, {nightly.layer_bytes:,} B compressed"
        f" ({_mib(nightly.layer_bytes)}); built in {built - started:.1f} s,"
        f" pushed in {pushed - built:.1f} s"
    )
    for name, lay in zip(nightly.names, nightly.image.layers, strict=True):
        print(f"    {name:<14} {lay.digest[7:19]}  {lay.size:>12,} B  ({len(lay.tar):,} B tar)")
    paths = requested_paths()
    print("  reading: " + ", ".join(str(p.relative_to(SOURCE_ROOT)) for p in paths))
    print()

    results: dict[str, Result] = {}
    pulled_ref: str | None = None
    with (
        CountingProxy(args.registry) as proxy,
        tempfile.TemporaryDirectory(prefix="pk-bench-") as tmp,
    ):
        direct_ref = f"{args.registry}/{nightly.repository}:{nightly.tag}"
        proxied_ref = f"{proxy.host}/{nightly.repository}:{nightly.tag}"
        proxied_cache, direct_cache = Path(tmp, "cache-proxied"), Path(tmp, "cache-direct")
        try:
            results["a"] = registry_read(
                "(a) registry, cold, proxied", proxied_ref, proxied_cache, paths, proxy
            )
            results["a-warm"] = registry_read(
                "(a') registry, warm, proxied", proxied_ref, proxied_cache, paths, proxy
            )
            results["a-direct"] = registry_read(
                "(a) registry, cold, direct", direct_ref, direct_cache, paths, None
            )
            results["a-direct-warm"] = registry_read(
                "(a') registry, warm, direct", direct_ref, direct_cache, paths, None
            )
            pulled_ref = proxied_ref
            results["b"] = pull_and_copy(client, proxied_ref, paths, proxy)
            results["c"] = engine_read(proxied_ref, paths, proxy)
        finally:
            if pulled_ref:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(pulled_ref, force=True)

    for result in results.values():
        _check_contents(result, nightly)
    ordered = [results[k] for k in ("a", "a-warm", "a-direct", "a-direct-warm", "b", "c")]
    print_table(ordered, nightly)
    print()
    print_layers(results["a"], nightly)
    missed = check_targets(results, nightly)
    print()
    for line in missed:
        print(f"TARGET MISSED: {line}")
    if not missed:
        print("all targets met")
    print(f"total run time {time.perf_counter() - run_started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
