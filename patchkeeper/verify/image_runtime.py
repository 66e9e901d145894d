"""Serving what the suite runs against inside the locked image itself.

Adapter tier: a container of the image (host network) running the image's own python
and sglang under `adapter_server.py`, with the overlay's files bind-mounted read-only
where its compose override mounts them. Boot tier: the overlay's own compose project
(`compose.yaml` + `compose.override.yaml`), brought up under a unique project name.
Either way the files the server sees are hashed inside the container, and every
container is removed when the block ends, however it ends.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
from docker.types import Mount

from patchkeeper.errors import ConfigError, ServerError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.compose import OverlayMount, dump
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.write import BASE_COMPOSE, OVERRIDE_COMPOSE
from patchkeeper.verify.runtime import SERVER, free_port, wait_healthy

LABEL = "dev.patchkeeper.verify"  # value: the run id, for finding what a run started
SERVER_PATH = "/opt/patchkeeper/adapter_server.py"
TEMPLATE_PATH = "/opt/patchkeeper/chat_template.jinja"
LOG_LINES = 200
# Run by the image's own python3: what each path holds, as the server sees it.
_HASH = (
    "import hashlib, json, sys\n"
    "def digest(path):\n"
    "    try:\n"
    "        with open(path, 'rb') as f:\n"
    "            return hashlib.sha256(f.read()).hexdigest()\n"
    "    except OSError:\n"
    "        return None\n"
    "print(json.dumps({p: digest(p) for p in sys.argv[1:]}))\n"
)


def new_run_id() -> str:
    return secrets.token_hex(5)


@dataclass(frozen=True)
class Running:
    """A healthy server in a container: its URL, the container, and its logs."""

    url: str
    container: Any
    logs: Callable[[], str]

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 of each path inside the container (None where it cannot be read)."""
        code, output = self.container.exec_run(["python3", "-c", _HASH, *paths])
        text = output.decode("utf-8", "replace")
        if code != 0:
            raise ServerError(f"hashing files in {self.container.name} failed: {text[-500:]}")
        found: dict[str, str | None] = json.loads(text)
        return found


PYTHONS = tuple(PurePosixPath(d) / "python3" for d in ("/usr/local/bin", "/usr/bin", "/bin"))


def runs_python(client: Any, image: str, lock: Lock) -> bool:
    """Whether the image has the `python3` both tiers run in it (read, never run)."""
    resolved = ResolvedImage(ImageRef.parse(lock.image.ref), image, None)
    found = EngineSource(client).read(resolved, list(PYTHONS))
    return any(f is not None for f in found.values())


def _alive(container: Any) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return container.status in ("created", "running")


def _tail(container: Any) -> str:
    try:
        return str(container.logs(tail=LOG_LINES).decode("utf-8", "replace"))
    except docker.errors.APIError as err:
        return f"(no logs: {err})"


def _cleanup_failed(message: str, pending: BaseException | None) -> None:
    """Raise a cleanup failure only when nothing else is being raised: the error that
    ended the block is the diagnosis, so it stays, with the cleanup's as a note."""
    if pending is None:
        raise UnreachableError(message)
    pending.add_note(message)


def _bind(source: Path, target: str) -> Mount:
    return Mount(target, str(source), type="bind", read_only=True)


@contextmanager
def _container(
    client: Any, image: str, argv: list[str], mounts: Sequence[Mount], run_id: str
) -> Iterator[Any]:
    """Run `argv` in a container of `image` on the host network; always remove it.

    Removal goes by the container's name, so a container created just before an
    interrupt (its handle never returned) goes too.
    """
    name = f"pkverify-{run_id}-{secrets.token_hex(3)}"
    pending: BaseException | None = None
    try:
        try:
            container = client.containers.run(
                image,
                argv[1:],
                entrypoint=argv[:1],
                name=name,
                detach=True,
                network_mode="host",
                mounts=list(mounts),
                labels={LABEL: run_id},
            )
        except docker.errors.APIError as err:
            raise ServerError(f"docker could not start {image}: {err}") from None
        yield container
    except BaseException as err:
        pending = err
        raise
    finally:
        try:
            with suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)
        except docker.errors.APIError as err:
            _cleanup_failed(f"removing container {name} failed; remove it by hand: {err}", pending)


@contextmanager
def adapter_container(
    client: Any,
    image: str,
    template: Path,
    overlay: Sequence[OverlayMount],
    run_id: str,
    deadline_s: float = 90.0,
) -> Iterator[Running]:
    """Serve the image's own sglang adapter with `overlay` mounted (vanilla when empty)."""
    port = free_port()
    argv = [
        "python3",
        SERVER_PATH,
        "--port",
        str(port),
        "--chat-template",
        TEMPLATE_PATH,
        "--log-level",
        "warning",
        # Cached tokens are the rendered prompts' shared prefix: billing_header_prefix's.
        "--enable-cache-report",
    ]
    mounts = [_bind(SERVER, SERVER_PATH), _bind(template, TEMPLATE_PATH)]
    mounts += [_bind(m.source, m.target) for m in overlay]
    with _container(client, image, argv, mounts, run_id) as container:
        running = Running(f"http://127.0.0.1:{port}", container, lambda: _tail(container))
        wait_healthy(running.url, lambda: _alive(container), running.logs, deadline_s)
        yield running


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def compose_service(
    client: Any,
    overlay: Path,
    service: str,
    port: int,
    run_id: str,
    scratch: Path,
    deadline_s: float,
) -> Iterator[Running]:
    """`compose up -d` the overlay's project; yield once the service's /health answers.

    The project name is unique, and a third file renames the container (a recipe's
    `container_name` would clash with the server it describes) and labels it with the
    run id. Always `down -v --remove-orphans`.
    """
    if _port_taken(port):
        raise ConfigError(
            f"port {port} already answers on this host (a running server?): the boot tier "
            "starts its own server there; stop the other one or verify on another host"
        )
    project = f"pkverify-{run_id}"
    extra = scratch / f"{project}.yaml"
    labelled = {"container_name": f"{project}-{service}", "labels": {LABEL: run_id}}
    extra.write_text(dump({"services": {service: labelled}}), encoding="utf-8")
    files = [overlay / BASE_COMPOSE, overlay / OVERRIDE_COMPOSE, extra]
    with compose_cli.find().project(project, files) as compose:
        yield from _composed(client, compose, overlay, service, port, run_id, deadline_s)


def _composed(
    client: Any,
    compose: list[str],
    overlay: Path,
    service: str,
    port: int,
    run_id: str,
    deadline_s: float,
) -> Iterator[Running]:
    project = f"pkverify-{run_id}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return compose_cli.run([*compose, *args], cwd=overlay)

    def logs() -> str:
        done = run("logs", "--no-color", "--tail", str(LOG_LINES))
        return done.stdout + done.stderr

    pending: BaseException | None = None
    try:
        up = run("up", "-d")
        if up.returncode != 0:
            raise ServerError(f"compose up failed: {(up.stdout + up.stderr)[-2000:]}\n{logs()}")
        found = client.containers.list(
            all=True,
            filters={"label": [f"{LABEL}={run_id}", f"com.docker.compose.service={service}"]},
        )
        if not found:
            raise ServerError(f"compose up started no container for service {service!r}")
        container = found[0]
        running = Running(f"http://127.0.0.1:{port}", container, logs)
        wait_healthy(running.url, lambda: _alive(container), logs, deadline_s)
        yield running
    except BaseException as err:
        pending = err
        raise
    finally:
        down = run("down", "-v", "--remove-orphans")
        if down.returncode != 0:
            _cleanup_failed(
                f"compose down of project {project} failed; remove it by hand: "
                f"{(down.stdout + down.stderr)[-1000:]}",
                pending,
            )
