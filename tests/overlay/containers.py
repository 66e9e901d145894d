"""The Docker SDK's own client and container models over a stand-in for its low-level
`APIClient`, so engine-free tests drive `running` and `driver` through the real
`docker.models` code (`.name`, `.labels`, `.reload()`, `.logs()`, `containers.list/get`).

`inspect` documents are the engine's own inspect shape, taken from `docker inspect` of a
container with compose labels, a bind mount, a named volume and a failing healthcheck
(and of one that exited 3), keeping only the fields the SDK and patchkeeper read.
"""

from __future__ import annotations

import hashlib
from typing import Any

import docker
import docker.errors

NO_ENGINE = "unix:///nonexistent/engine-free-test.sock"
IMAGE = "sha256:6e90481f2897e235752aa6d7bc580d4779214558c37ec047ebbfe6e841aa6ba7"

RUNNING = {"Status": "running", "Running": True, "ExitCode": 0, "Error": ""}
EXITED = {"Status": "exited", "Running": False, "ExitCode": 3, "Error": ""}


def health(status: str, *outputs: tuple[int, str]) -> dict[str, Any]:
    """A running container's `State` with its healthcheck's status and probe log."""
    log = [
        {"Start": "2026-12-08T01:25:03.98Z", "End": "2026-12-08T01:25:04.03Z", "ExitCode": code}
        | {"Output": output}
        for code, output in outputs
    ]
    return RUNNING | {"Health": {"Status": status, "FailingStreak": len(log), "Log": log}}


def bind(source: str, destination: str) -> dict[str, Any]:
    return {
        "Type": "bind",
        "Source": source,
        "Destination": destination,
        "Mode": "ro",
        "RW": False,
        "Propagation": "rprivate",
    }


def volume(name: str, destination: str) -> dict[str, Any]:
    return {
        "Type": "volume",
        "Name": name,
        "Source": f"/var/lib/docker/volumes/{name}/_data",
        "Destination": destination,
        "Driver": "local",
        "Mode": "z",
        "RW": True,
        "Propagation": "",
    }


def inspect(
    name: str,
    labels: dict[str, str] | None = None,
    state: dict[str, Any] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    image: str = IMAGE,
) -> dict[str, Any]:
    """`docker inspect NAME`, as far as it is read (the engine gives `Labels: null`
    for a container without labels)."""
    return {
        "Id": hashlib.sha256(name.encode()).hexdigest(),
        "Name": f"/{name}",
        "Image": image,
        "Config": {"Labels": labels},
        "State": state if state is not None else RUNNING,
        "Mounts": mounts or [],
    }


class Engine:
    """Stands in for `docker.APIClient`: answers `containers`, `inspect_container` and
    `logs` from inspect documents. A container given several documents moves through
    them, one per inspect (the last one stays); `failure` is raised by every call."""

    def __init__(self, *containers: list[dict[str, Any]]) -> None:
        self.states: dict[str, list[dict[str, Any]]] = {
            str(states[0]["Id"]): list(states) for states in containers
        }
        self.output: dict[str, bytes] = {}
        self.log_calls: list[dict[str, Any]] = []
        self.failure: docker.errors.APIError | None = None

    def _fail(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _id(self, name_or_id: str) -> str:
        for key, states in self.states.items():
            if name_or_id in (key, states[0]["Name"].lstrip("/")):
                return key
        raise docker.errors.NotFound(f"No such container: {name_or_id}")

    def containers(
        self, all: bool = False, filters: dict[str, Any] | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        """`docker ps`: running ones (every one with `all`) carrying each `label` filter."""
        self._fail()
        wanted = (filters or {}).get("label", [])
        found = []
        for key, states in self.states.items():
            labels = states[0]["Config"]["Labels"] or {}
            if not all and states[0]["State"]["Status"] != "running":
                continue
            if set(wanted) <= {f"{k}={v}" for k, v in labels.items()}:
                found.append({"Id": key, "Names": [states[0]["Name"]], "Labels": labels})
        return found

    def inspect_container(self, container: str) -> dict[str, Any]:
        self._fail()
        states = self.states[self._id(container)]
        return states.pop(0) if len(states) > 1 else states[0]

    def logs(self, container: str, **options: Any) -> bytes:
        self._fail()
        self.log_calls.append(options)
        return self.output.get(self._id(container), b"")


def client(engine: Engine) -> Any:
    """A real `docker.DockerClient` whose low-level API is `engine`."""
    made = docker.DockerClient(base_url=NO_ENGINE, version="1.43")
    made.api = engine
    return made
