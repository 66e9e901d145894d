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
(the stand-in does not validate tool schemas). The versions are the ones this list
was verified with; transitive dependencies are left to pip. Measured on 2 cores with
a cold pip cache: 0.5.13 builds in ~19 s to 295 MiB, 0.5.23 in ~24 s to 425 MiB (of
which sglang itself is 94 and 222 MiB).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

from filelock import FileLock

from patchkeeper.errors import ConfigError, UnreachableError, UnsafeInputError

_COMMON = (
    "fastapi==0.165.0",
    "pydantic==2.14.3",
    "uvicorn==0.54.0",
    "jinja2==3.1.6",
    "orjson==3.13.0",
    "numpy==2.4.6",
    "pybase64==1.5.1",
    "requests==2.34.2",
    "tqdm==4.70.1",
    "ipython==9.18.1",
)
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "0.5.13": (*_COMMON, "openai==2.6.1"),
    "0.5.23": (*_COMMON, "openai==2.8.0", "msgspec==0.22.0"),
}
_MARKER = "patchkeeper-env.json"


def requirements(version: str) -> tuple[str, ...]:
    """Everything installed for `version`, sglang itself first."""
    try:
        extras = REQUIREMENTS[version]
    except KeyError:
        known = ", ".join(sorted(REQUIREMENTS))
        message = f"no adapter-tier environment for sglang {version} (have: {known})"
        raise ConfigError(message) from None
    return (f"sglang=={version}", *extras)


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


def ensure_env(version: str, root: Path, *, base_python: str = sys.executable) -> Path:
    """The python of a venv under `root` with sglang `version` and the adapter's deps."""
    sglang, *extras = requirements(version)
    # --no-deps: sglang's own requirements are the GPU stack (torch, CUDA, kernels).
    return cached_venv(root / f"sglang-{version}", [["--no-deps", sglang], extras], base_python)


def _installed_package(python: Path) -> Path:
    # find_spec locates the package without running sglang/__init__.py (which needs torch).
    probe = "import importlib.util as u; print(u.find_spec('sglang').submodule_search_locations[0])"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"{python}: sglang is not installed: {done.stderr.strip()[-300:]}")
    return Path(done.stdout.strip())


def overlay_package(python: Path, overlay_rootfs: Path, source_root: str, dest: Path) -> Path:
    """Copy `python`'s installed sglang into `dest` and lay the overlay over it.

    The overlay's files for the package sit at `<overlay_rootfs>/<source_root>/python/
    sglang/...` (the checkout's layout inside the image). Files elsewhere in the
    overlay (tests, docs) are not part of the package and are left out. Returns the
    PYTHONPATH entry under which `sglang` resolves to the overlaid copy.
    """
    root = PurePosixPath(source_root)
    if not root.is_absolute() or ".." in root.parts:
        raise UnsafeInputError(f"source_root must be an absolute path, got {source_root!r}")
    if not overlay_rootfs.is_dir():
        raise ConfigError(f"{overlay_rootfs}: no such overlay rootfs")
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
    shutil.copytree(
        _installed_package(python), target, ignore=shutil.ignore_patterns("__pycache__")
    )
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        # copyfile, not copy2: overlay files are read-only; the copy need not be.
        shutil.copyfile(package / relative, target / relative)
    return dest
