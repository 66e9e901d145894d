"""Python environments that run SGLang's real Anthropic adapter without a GPU or torch.

The adapter tier (`adapter_server.py`) imports `sglang.srt.entrypoints.anthropic` and
the OpenAI protocol models from a real sglang wheel, installed `--no-deps` so that
none of torch, CUDA or the kernels come along. What the adapter path does import was
found by starting the server and answering every import error, for each version:

* fastapi, pydantic: the adapter's request/response models, its JSONResponse and
  StreamingResponse, and http_server's route and exception handlers.
* uvicorn: serves the app.
* jinja2: chat-template rendering, as transformers' apply_chat_template does it.
* orjson: ORJSONResponse (http_server's error bodies, /v1/models) and the orjson
  request class of newer http_servers.
* openai: `sglang.srt.entrypoints.openai.protocol` imports `openai.types.responses`;
  pinned to the release each sglang pins.
* numpy, pybase64, requests, tqdm, IPython: imported at module level by `sglang.utils`,
  which the OpenAI protocol imports for one helper. Unused, but the import fails
  without them.
* msgspec (0.5.23 only): the OpenAI protocol's streaming structs.

Not needed: torch, transformers, xgrammar (the protocol tolerates its absence), jsonschema
(the stand-in does not validate tool schemas). So a venv holds exactly that list, each
as the sglang code at hand declares it (its pyproject.toml, or a release wheel's
METADATA, which is generated from it): an exact `==` pin is kept, anything looser gets
the version this list was verified with when it satisfies the declared range. The
rest of sglang's dependencies (the GPU stack, transformers, ...) are never installed.
Venvs are keyed by that requirement list, so releases and commits that declare the
same pins share one. Measured on 2 cores with a cold pip cache: 0.5.13 builds in
~19 s to 295 MiB, 0.5.23 in ~24 s to 425 MiB (of which sglang itself is 94 and 222 MiB).
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from patchkeeper.errors import ConfigError, UnreachableError, UnsafeInputError

# What the adapter path imports (see above), with the version each was verified with.
ADAPTER_IMPORTS = {
    "fastapi": "0.165.0",
    "pydantic": "2.14.3",
    "uvicorn": "0.54.0",
    "jinja2": "3.1.6",
    "orjson": "3.13.0",
    "numpy": "2.4.6",
    "pybase64": "1.5.1",
    "requests": "2.34.2",
    "tqdm": "4.70.1",
    "ipython": "9.18.1",
    "openai": "2.8.0",
}
OPTIONAL_IMPORTS = {"msgspec": "0.22.0"}  # only where the code declares it (0.5.23+)
_MARKER = "patchkeeper-env.json"


def adapter_requirements(declared_lines: Iterable[str]) -> tuple[str, ...]:
    """The adapter's imports, pinned as sglang's declared dependencies say."""
    wanted: dict[str, Requirement] = {}
    for line in declared_lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # not ours to judge: pip never sees it
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        wanted.setdefault(canonicalize_name(requirement.name), requirement)
    pins = []
    for name, verified in (*ADAPTER_IMPORTS.items(), *OPTIONAL_IMPORTS.items()):
        declared = wanted.get(name)
        if declared is None:
            if name not in OPTIONAL_IMPORTS:
                pins.append(f"{name}=={verified}")
            continue
        exact = [s.version for s in declared.specifier if s.operator == "=="]
        if exact:
            pins.append(f"{name}=={exact[0]}")
        elif declared.specifier.contains(verified, prereleases=True):
            pins.append(f"{name}=={verified}")
        else:
            pins.append(f"{name}{declared.specifier}")
    return tuple(pins)


def declared_in_pyproject(text: str) -> list[str]:
    """`[project] dependencies` of a pyproject.toml (parsed, never executed)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UnsafeInputError(f"python/pyproject.toml is not TOML: {err}") from None
    found = (doc.get("project") or {}).get("dependencies") or []
    return [str(item) for item in found if isinstance(item, str)]


def declared_in_wheel(wheel: Path) -> list[str]:
    """A wheel's Requires-Dist lines (its METADATA)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise UnsafeInputError(f"{wheel.name}: expected one .dist-info/METADATA")
        metadata = email.parser.BytesHeaderParser().parsebytes(archive.read(names[0]))
    return [str(line) for line in metadata.get_all("Requires-Dist") or []]


def release_version(text: str) -> str:
    """A PyPI release number, refusing anything pip would read as an option or a URL."""
    try:
        version = Version(text)
    except InvalidVersion:
        raise ConfigError(f"sglang version {text!r} is not a version number") from None
    if version.local or version.is_devrelease:
        raise ConfigError(f"sglang {text} is a development build: no release carries it")
    return str(version)


def release_wheel(version: str, root: Path, *, base_python: str = sys.executable) -> Path:
    """The PyPI wheel of sglang `version`, downloaded once into `root/wheels`."""
    folder = root / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"sglang-{version}.lock")):
        found = sorted(folder.glob(f"sglang-{version}-*.whl"))
        if not found:
            run_step(
                [
                    base_python,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-input",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-d",
                    str(folder),
                    f"sglang=={version}",
                ],
                f"downloading sglang {version}",
            )
            found = sorted(folder.glob(f"sglang-{version}-*.whl"))
        if not found:
            raise UnreachableError(f"pip downloaded no wheel for sglang {version}")
    return found[-1]


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def run_step(command: list[str], what: str) -> None:
    """Run a setup command; on failure raise with the tail of its output."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        # pip failing is nearly always the index being out of reach or missing a pin.
        raise UnreachableError(f"{what} failed (exit {done.returncode}):\n{tail}")


def cached_venv(venv: Path, groups: list[list[str]], base_python: str) -> Path:
    """The python of `venv`, built once from pip install `groups` (in order) and reused.

    Reused while its recorded requirements match; a build that did not finish (no
    marker) is removed and redone. A lock keeps concurrent callers from building the
    same venv twice. Every group's first item may be `--no-deps`.
    """
    wanted = [item for group in groups for item in group]
    marker = venv / _MARKER
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        if marker.is_file():
            try:
                recorded = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                recorded = None
            if isinstance(recorded, dict) and recorded.get("requirements") == wanted:
                return _venv_python(venv)
        if venv.exists():
            shutil.rmtree(venv)
        started = time.monotonic()
        run_step([base_python, "-m", "venv", str(venv)], f"creating {venv}")
        pip = [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "--no-input"]
        for group in groups:
            run_step([*pip, *group], f"installing {' '.join(group[:3])} into {venv}")
        record = {"requirements": wanted, "build_seconds": round(time.monotonic() - started, 1)}
        marker.write_text(json.dumps(record), encoding="utf-8")
    return _venv_python(venv)


@dataclass(frozen=True)
class HostSglang:
    """An sglang for the host runtime: a venv with the adapter's imports, and the
    directory holding the `sglang` package (first on PYTHONPATH) it runs with."""

    python: Path
    package: Path
    version: str
    origin: str  # where the package came from, for the report


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Extract `wheel` into `dest` once (its names checked: nothing may leave `dest`)."""
    marker = dest / _MARKER
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if marker.is_file():
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise UnsafeInputError(f"{wheel.name}: entry {name!r} leaves the package")
            archive.extractall(dest)
        marker.write_text(json.dumps({"wheel": wheel.name}), encoding="utf-8")
    return dest


def ensure_release(version: str, root: Path, *, base_python: str = sys.executable) -> HostSglang:
    """Release `version` from PyPI: its wheel unpacked (never installed with its own
    requirements, the GPU stack) and a venv with the adapter's imports as it pins them."""
    wheel = release_wheel(release_version(version), root, base_python=base_python)
    package = unpack_wheel(wheel, root / "releases" / f"sglang-{version}")
    python = ensure_deps_env(adapter_requirements(declared_in_wheel(wheel)), root)
    return HostSglang(python, package, version, f"sglang {version} from PyPI")


def ensure_deps_env(
    requirements: tuple[str, ...], root: Path, *, base_python: str = sys.executable
) -> Path:
    """A venv with only `requirements`: sglang itself comes on PYTHONPATH (an image's
    tree), so every commit that declares the same pins shares it."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    return cached_venv(root / f"adapter-deps-{key}", [list(requirements)], base_python)


def _installed_package(python: Path) -> Path:
    # find_spec locates the package without running sglang/__init__.py (which needs torch).
    probe = "import importlib.util as u; print(u.find_spec('sglang').submodule_search_locations[0])"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"{python}: sglang is not installed: {done.stderr.strip()[-300:]}")
    return Path(done.stdout.strip())


def installed_package(python: Path) -> Path:
    """The directory holding the `sglang` package that `python` imports."""
    return _installed_package(python).parent


def overlay_package(base: Path, overlay_rootfs: Path, source_root: str, dest: Path) -> Path:
    """Copy the sglang package under `base` into `dest` and lay the overlay over it.

    The overlay's files for the package sit at `<overlay_rootfs>/<source_root>/python/
    sglang/...` (the checkout's layout inside the image). Files elsewhere in the
    overlay (tests, docs) are not part of the package and are left out. Returns the
    PYTHONPATH entry under which `sglang` resolves to the overlaid copy.
    """
    root = PurePosixPath(source_root)
    if not root.is_absolute() or ".." in root.parts:
        raise UnsafeInputError(f"source_root must be an absolute path, got {source_root!r}")
    # No rootfs: an overlay that changes nothing (overlay_files still holds it to the lock).
    package = overlay_rootfs.joinpath(*root.parts[1:], "python", "sglang")
    files = []
    for source in sorted(package.rglob("*")) if package.is_dir() else []:
        if source.is_symlink() or not (source.is_file() or source.is_dir()):
            raise UnsafeInputError(f"{source}: overlay entries must be plain files")
        if source.is_file():
            files.append(source.relative_to(package))

    target = dest / "sglang"
    if target.exists():
        shutil.rmtree(target)
    dest.mkdir(parents=True, exist_ok=True)
    # Bytecode stays behind: a .pyc of a replaced file could otherwise pass for current
    # when the overlay file has the same size and mtime second.
    shutil.copytree(base / "sglang", target, ignore=shutil.ignore_patterns("__pycache__"))
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        # copyfile, not copy2: overlay files are read-only; the copy need not be.
        shutil.copyfile(package / relative, target / relative)
    return dest
