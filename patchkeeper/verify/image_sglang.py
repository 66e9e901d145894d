"""The image's own sglang, for runners that cannot run the image: its `python/` tree.

A hosted runner cannot pull a ~30 GB nightly, but it can read the few MB of one
checkout through the image reader (registry, layout or engine, the source sync used).
The reader needs paths, so the list comes from the upstream mirror at the image's
commit (`git ls-tree`, `python/sglang` and `python/pyproject.toml`); every file is then
read from the image and its bytes compared with the commit's blob. What runs is the
image's bytes; files that differ from the commit are named in the report, never
silently trusted or replaced.

The version is the image's own: setuptools-scm's generated `sglang/_version.py` (a
nightly's `0.5.24.dev123+g...`), else `sglang/version.py`, else `python/pyproject.toml`,
all parsed, never executed. The venv's pins come from that tree's pyproject.toml
(`sglang_env.adapter_requirements`). A tree that lacks modules the adapter loads (a
partial checkout, as in the demo image) is laid over the release of its version, which
must then be a release. Trees are cached per commit and content.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import docker.errors
from filelock import FileLock

from patchkeeper.errors import ConfigError, ImageError, UnreachableError, UnsafeInputError
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef, ImageSource, ResolvedImage
from patchkeeper.image.paths import MAX_FILE_BYTES
from patchkeeper.image.registry import RegistrySource
from patchkeeper.overlay.lock import Lock
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.verify.sglang_env import (
    HostSglang,
    adapter_requirements,
    declared_in_pyproject,
    ensure_deps_env,
    ensure_release,
)

PACKAGE = PurePosixPath("python/sglang")
PYPROJECT = PurePosixPath("python/pyproject.toml")
GENERATED_VERSION = PACKAGE / "_version.py"  # untracked: written when the image installed it
VERSION_FILE = PACKAGE / "version.py"
# What adapter_server.py loads from the package: without these the tree cannot serve.
ADAPTER_MODULES = (
    "srt/entrypoints/anthropic/serving.py",
    "srt/entrypoints/anthropic/protocol.py",
    "srt/entrypoints/openai/protocol.py",
    "srt/entrypoints/openai/serving_chat.py",
    "srt/entrypoints/http_server.py",
    "srt/parser/jinja_template_utils.py",
)


def _assigned_string(source: bytes, names: tuple[str, ...]) -> str | None:
    """The string literal assigned to one of `names` at module level (`a = b = "x"`)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if targets & set(names) and isinstance(node.value.value, str):
                return node.value.value
    return None


def tree_version(files: Mapping[PurePosixPath, bytes]) -> str | None:
    """The sglang version a checkout declares (see the module docstring)."""
    for path in (GENERATED_VERSION, VERSION_FILE):
        if path in files:
            found = _assigned_string(files[path], ("__version__", "version"))
            if found:
                return found
    if PYPROJECT in files:
        import tomllib

        try:
            project = tomllib.loads(files[PYPROJECT].decode("utf-8")).get("project") or {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None
        version = project.get("version")
        return version if isinstance(version, str) else None
    return None


def git_blob_sha(data: bytes) -> str:
    """The object id git gives a file's bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def commit_listing(mirror: GitMirror, commit: str) -> dict[PurePosixPath, str]:
    """Regular files of the package and pyproject at `commit`: path -> blob id."""
    out = str(
        mirror.repo.git.ls_tree("-r", "--full-tree", commit, "--", str(PACKAGE), str(PYPROJECT))
    )
    listing = {}
    for line in out.splitlines():
        meta, _, name = line.partition("\t")
        mode, kind, blob = meta.split()
        if kind == "blob" and mode in ("100644", "100755"):
            listing[PurePosixPath(name)] = blob
    return listing


class TreeReader(Protocol):
    """Reads many files of one image: the source itself, or for the engine one archive."""

    @property
    def source(self) -> ImageSource: ...

    def read_files(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes]: ...


@dataclass(frozen=True)
class SourceTree:
    """Registry and layout sources stream each layer once for any number of paths."""

    source: ImageSource

    def read_files(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes]:
        found = self.source.read(image, paths)
        return {p: f.content for p, f in found.items() if f is not None}


class _Chunks(io.RawIOBase):
    """A file-like view of the engine's archive chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


@dataclass(frozen=True)
class EngineTree:
    """The engine source reads one file per API call (thousands here): this reads the
    common parent directory as one archive from a stopped container instead. Members
    are untrusted: only regular files under the requested names are kept; links,
    devices and oversized files are skipped, as the image reader does."""

    source: EngineSource

    def read_files(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes]:
        parent = PurePosixPath(*_common_parts(paths))
        wanted = set(paths)
        client = self.source.client
        try:
            container = client.containers.create(
                image.image_id, command=["patchkeeper-never-runs"], network_disabled=True
            )
        except docker.errors.APIError as err:
            raise UnreachableError(f"Docker daemon error reading {image.ref}: {err}") from None
        found: dict[PurePosixPath, bytes] = {}
        try:
            chunks, _ = container.get_archive(str(parent))
            with tarfile.open(fileobj=io.BufferedReader(_Chunks(iter(chunks))), mode="r|") as tar:
                for member in tar:
                    path = parent.parent / member.name
                    if path not in wanted or not member.isreg() or member.size > MAX_FILE_BYTES:
                        continue
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        found[path] = extracted.read()
        except docker.errors.NotFound:
            return {}
        except (docker.errors.APIError, tarfile.TarError) as err:
            raise ImageError(f"reading {parent} from {image.ref}: {err}") from None
        finally:
            container.remove(force=True)
        return found


def _common_parts(paths: Sequence[PurePosixPath]) -> tuple[str, ...]:
    common = paths[0].parent.parts
    for path in paths[1:]:
        parts = path.parent.parts
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return common


def tree_reader(lock: Lock) -> TreeReader:
    """A reader for the source sync used (layouts are not recorded: no path to reopen)."""
    if lock.image.source == "engine":
        return EngineTree(EngineSource())
    if lock.image.source == "registry":
        return SourceTree(CachedSource(RegistrySource()))
    raise ConfigError(
        f"the lock's image was read from a {lock.image.source!r} source, which verify cannot "
        "reopen: pass --sglang-version to use a release instead"
    )


def resolve_locked(source: ImageSource, lock: Lock) -> ResolvedImage:
    ref = ImageRef.parse(lock.image.ref)
    if lock.image.digest and source.name != "engine":
        ref = ImageRef(ref.repository, None, lock.image.digest)
    image = source.resolve(ref)
    if image.image_id != lock.image.id:
        raise ImageError(
            f"{lock.image.ref} is now {image.image_id}, not the locked {lock.image.id}: sync again"
        )
    return image


def _mirror_at(lock: Lock) -> tuple[GitMirror, str]:
    patchset = lock.patchsets[0]
    mirror = GitMirror(patchset.upstream)
    if not mirror.has_commit(patchset.commit):
        mirror.fetch(patchset.branch, [])
    if not mirror.has_commit(patchset.commit):
        raise ConfigError(
            f"{patchset.upstream} has no commit {patchset.commit} (the image's): cannot list "
            "its python/ tree; pass --sglang-version to use a release instead"
        )
    return mirror, patchset.commit


def read_tree(
    reader: TreeReader,
    image: ResolvedImage,
    source_root: str,
    listing: Mapping[PurePosixPath, str],
) -> tuple[dict[PurePosixPath, bytes], list[str]]:
    """The image's bytes of every listed file (and the generated version file), and the
    listed paths whose bytes are not the commit's blob (or that the image lacks)."""
    root = PurePosixPath(source_root)
    if not root.is_absolute() or ".." in root.parts:
        raise UnsafeInputError(f"source_root must be an absolute path, got {source_root!r}")
    wanted = sorted({*listing, GENERATED_VERSION})
    found = reader.read_files(image, [root / p for p in wanted])
    files, differs = {}, []
    for path in wanted:
        content = found.get(root / path)
        if content is None:
            if path in listing:
                differs.append(f"{path} (absent from the image)")
            continue
        files[path] = content
        if path in listing and git_blob_sha(content) != listing[path]:
            differs.append(str(path))
    return files, differs


def _write_tree(files: Mapping[PurePosixPath, bytes], dest: Path, base: Path | None) -> None:
    """`dest/sglang`: the release package under `base` (when given), the files over it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if (dest / "sglang").is_dir():
            return
        staging = Path(tempfile.mkdtemp(prefix=".tree-", dir=dest.parent))
        try:
            if base is not None:
                shutil.copytree(base / "sglang", staging / "sglang")
            for path, data in files.items():
                if not path.is_relative_to(PACKAGE):
                    continue
                target = staging.joinpath("sglang", *path.relative_to(PACKAGE).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def image_sglang(lock: Lock, root: Path, reader: TreeReader | None = None) -> HostSglang:
    """The image's own sglang package and a venv for it, cached under `root`."""
    reader = reader or tree_reader(lock)
    image = resolve_locked(reader.source, lock)
    mirror, commit = _mirror_at(lock)
    listing = commit_listing(mirror, commit)
    files, differs = read_tree(reader, image, lock.patchsets[0].source_root, listing)
    version = tree_version(files)
    if version is None:
        raise ImageError(
            f"{lock.image.ref}: no sglang version in {GENERATED_VERSION}, {VERSION_FILE} or "
            f"{PYPROJECT} under {lock.patchsets[0].source_root}"
        )
    package_files = {p for p in files if p.is_relative_to(PACKAGE)}
    complete = all(PACKAGE / m in package_files for m in ADAPTER_MODULES)
    digest = hashlib.sha256(
        json.dumps(
            sorted((str(p), hashlib.sha256(d).hexdigest()) for p, d in files.items())
        ).encode()
    ).hexdigest()[:12]
    dest = root / "trees" / f"{commit[:12]}-{digest}"
    origin = f"the python/ tree of {lock.image.ref} at {commit[:12]} ({len(package_files)} files"
    origin += (
        f"; {len(differs)} differ from the commit: {', '.join(differs[:3])})" if differs else ")"
    )
    if complete:
        declared = declared_in_pyproject(files[PYPROJECT].decode()) if PYPROJECT in files else []
        python = ensure_deps_env(adapter_requirements(declared), root)
        _write_tree(files, dest, None)
        return HostSglang(python, dest, version, origin)
    missing = [m for m in ADAPTER_MODULES if PACKAGE / m not in package_files]
    try:
        release = ensure_release(version, root)
    except ConfigError as err:
        raise ImageError(
            f"{lock.image.ref}: its python/ tree lacks {', '.join(missing[:3])}, and no release "
            f"can fill them in: {err}"
        ) from None
    _write_tree(files, dest, release.package)
    return HostSglang(release.python, dest, version, f"{origin} over sglang {version} from PyPI")
