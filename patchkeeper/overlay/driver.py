"""Driving one compose service: its project's lock, Compose's model of it, where a
client on this host reaches it, bringing it up and waiting for Docker's health.

Used by `up` and `down`; the compose children themselves run through
`compose_cli.run`, which never lets them outlive patchkeeper.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import docker.errors
from filelock import FileLock, Timeout

from patchkeeper.config.models import Recipe
from patchkeeper.errors import ConfigError, ServerError, UnreachableError
from patchkeeper.overlay import compose_cli, running
from patchkeeper.overlay.compose import flag
from patchkeeper.overlay.service import Composed, UserCompose
from patchkeeper.paths import cache_dir

LOG_LINES = 60


@contextmanager
def serialised(project: str) -> Iterator[None]:
    """One `up` or `down` at a time per compose project (on this machine)."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"compose-project-{project}.lock"
    try:
        with FileLock(str(path), timeout=0):
            yield
    except Timeout:
        raise ConfigError(
            f"another patchkeeper up or down is working on compose project {project!r} "
            f"(lock {path}); nothing changed: try again when it has finished"
        ) from None


class ComposeService:
    """One composed service under Compose: up, the service's container, its diagnosis."""

    def __init__(self, client: Any, compose: compose_cli.Compose, target: Composed) -> None:
        self.client, self.target = client, target
        self.stack = ExitStack()
        directory = None if target.override is None else target.files[0].parent
        self.argv = self.stack.enter_context(
            compose.project(target.project, target.files, directory)
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return compose_cli.run([*self.argv, *args])

    def container(self) -> Any | None:
        found = running.find(self.client, self.target.project, self.target.service, None)
        return found.container if found else None

    def up(self) -> None:
        done = self.run("up", "-d", "--no-deps", self.target.service)
        if done.returncode != 0:
            raise ServerError(f"compose up failed: {(done.stdout + done.stderr)[-2000:]}")

    def remove(self) -> None:
        done = self.run("rm", "-s", "-f", self.target.service)
        if done.returncode != 0:
            raise UnreachableError(f"compose rm failed: {(done.stdout + done.stderr)[-1000:]}")


def health(container: Any) -> str:
    """`healthy`, `unhealthy`, `starting`, `exited` or `running` (no healthcheck)."""
    container.reload()
    state = container.attrs.get("State") or {}
    if state.get("Status") not in ("running", "created", "restarting"):
        return "exited"
    health = (state.get("Health") or {}).get("Status")
    return str(health) if health else "running"


def diagnosis(container: Any | None, lines: int = LOG_LINES) -> str:
    """Its last output, the health probe's last output and the exit code, as Docker has them."""
    if container is None:
        return "(no container)"
    try:
        container.reload()
        logs = container.logs(tail=lines).decode("utf-8", "replace").rstrip()
    except docker.errors.APIError as err:
        return f"(no logs: {err})"
    state = container.attrs.get("State") or {}
    parts = [logs or "(the container printed nothing)"]
    probes = (state.get("Health") or {}).get("Log") or []
    if probes:
        last = probes[-1]
        output = str(last.get("Output") or "").strip() or "(nothing)"
        parts.append(f"health probe's last output (exit {last.get('ExitCode')}): {output}")
    if state.get("Status") not in ("running", "created", "restarting"):
        parts.append(f"container exit code: {state.get('ExitCode')}")
    return "\n".join(parts)


def wait_healthy(project: ComposeService, deadline_s: float) -> None:
    """Return once Docker reports the service healthy; raise with its diagnosis otherwise."""
    deadline = time.monotonic() + deadline_s
    state = "missing"
    while time.monotonic() < deadline:
        container = project.container()
        state = health(container) if container is not None else "missing"
        if state in ("healthy", "running"):
            return
        if state in ("unhealthy", "exited"):
            break
        time.sleep(1.0)
    if state in ("starting", "missing"):
        state = f"not healthy after {deadline_s:g} s"
    raise ServerError(
        f"service {project.target.service} {state}; its last output:\n"
        f"{diagnosis(project.container())}"
    )


def published_ports(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, published, target) of each published port of a Compose service model."""
    found: list[tuple[str, int, int]] = []
    listed = spec.get("ports")
    for port in listed if isinstance(listed, list) else []:
        if isinstance(port, dict):
            host, published, target = port.get("host_ip"), port.get("published"), port.get("target")
        else:  # v1 may print the short syntax: [ip:]published:target[/proto]
            parts = str(port).split("/")[0].rsplit(":", 2)
            if len(parts) < 2:
                continue
            host, published, target = parts if len(parts) == 3 else ("", *parts)
        first = str(published).split("-")[0]  # a range publishes from its first port
        if first.isdigit() and str(target).isdigit():
            found.append((str(host or "").strip("[]"), int(first), int(str(target))))
    return found


def smoke_url(service: str, spec: dict[str, Any], given: str | None) -> str:
    """Where a client on this host reaches the service: `--url`, else the published port
    of its `--port` (or its first published port), else `--port` itself."""
    if given:
        return given.rstrip("/")
    command = spec.get("command") or []
    port = flag([str(a) for a in command], "--port") if isinstance(command, list) else None
    port = port if port is not None and port.isdigit() else None
    published = published_ports(spec)
    chosen = [p for p in published if port is not None and p[2] == int(port)] or published
    if chosen:
        host, number, _ = chosen[0]
        host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{number}"
    if port is None:
        raise ConfigError(
            f"cannot tell service {service}'s port (no published port, no --port in its "
            "command): give --url for the smoke checks"
        )
    return f"http://127.0.0.1:{port}"


def service_model(compose: compose_cli.Compose, target: Composed) -> dict[str, Any]:
    """The service as Compose resolves the files `up` runs."""
    return service_of(compose.config(target.files), target)


def service_of(model: dict[str, Any], target: Composed) -> dict[str, Any]:
    """`target`'s service in Compose's model of its files."""
    spec = (model.get("services") or {}).get(target.service)
    if not isinstance(spec, dict):
        raise ConfigError(f"{target.files[0]}: no service {target.service!r}")
    return spec


def user_of(recipe: Recipe, given: UserCompose | None) -> UserCompose | None:
    """`--compose/--service`, else the compose file the recipe adopted, else None."""
    service = recipe.service
    if given is None and service.compose_file is not None:
        adopted = tuple(str(path) for path in service.adopted)
        file = (recipe.path.parent / service.compose_file).resolve()
        return UserCompose(file, service.name, adopted)
    return given


def project_for(
    compose: compose_cli.Compose, user: UserCompose | None, given: str | None
) -> str | None:
    """`--project`, else (their file, Compose v2) the project Compose itself derives."""
    if given or user is None or compose.major < 2:
        return given
    return str(compose.config([user.file]).get("name") or "") or None
