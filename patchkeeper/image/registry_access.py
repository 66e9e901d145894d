"""Where a registry is, how it is reached, for how long, and with whose credentials.

Names resolve as docker resolves them (`lmsysorg/sglang` is Docker Hub's); loopback
and `PATCHKEEPER_INSECURE_REGISTRIES` speak plain HTTP; deadlines come from the
environment; credentials from `PATCHKEEPER_REGISTRY_USERNAME`/`PASSWORD`, else Docker's
own config and credential helpers (docker SDK), registered as secrets so no message
ever shows them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import docker.auth

from patchkeeper.errors import ImageError, register_secret
from patchkeeper.lowspeed import LowSpeed

log = logging.getLogger("patchkeeper.image.registry")

DOCKER_HUB = "registry-1.docker.io"


def _seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ImageError(f"{variable}={text!r}: must be a positive number of seconds")
    return value


@dataclass(frozen=True)
class Deadlines:
    """How long registry work may take (seconds; environment overrides).

    `request`: one request, body included (blobs get `size / MIN_BLOB_RATE` more);
    `stall`: no byte at all for this long; `overall`: everything one source does;
    `low_speed`: a body that arrives slower than this is abandoned (see `lowspeed`).
    """

    request: float = 300.0
    stall: float = 30.0
    overall: float = 1200.0
    low_speed: LowSpeed = field(default_factory=LowSpeed)

    @classmethod
    def from_env(cls) -> Deadlines:
        request = _seconds("PATCHKEEPER_REGISTRY_TIMEOUT", cls.request)
        low_speed = LowSpeed.from_env()
        return cls(
            request=request,
            stall=min(cls.stall, request, low_speed.seconds),
            overall=_seconds("PATCHKEEPER_REGISTRY_DEADLINE", cls.overall),
            low_speed=low_speed,
        )


def split_repository(repository: str) -> tuple[str, str]:
    """`lmsysorg/sglang` -> (registry-1.docker.io, lmsysorg/sglang), as docker resolves names."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    if first == "docker.io":
        repository = rest
    return DOCKER_HUB, repository if "/" in repository else f"library/{repository}"


def insecure(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0]
    listed = {r.strip() for r in os.environ.get("PATCHKEEPER_INSECURE_REGISTRIES", "").split(",")}
    return host in ("127.0.0.1", "localhost", "[::1]") or registry in listed


def credentials(registry: str) -> tuple[str, str] | None:
    """From PATCHKEEPER_REGISTRY_USERNAME/PASSWORD, else Docker's config and helpers."""
    user = os.environ.get("PATCHKEEPER_REGISTRY_USERNAME")
    secret = os.environ.get("PATCHKEEPER_REGISTRY_PASSWORD")
    if user and secret:
        log.info("registry %s: credentials from PATCHKEEPER_REGISTRY_USERNAME/PASSWORD", registry)
        return user, secret
    try:
        config = docker.auth.load_config()
        found = docker.auth.resolve_authconfig(config, None if registry == DOCKER_HUB else registry)
    except Exception:  # a broken credential helper must not leak or crash: go anonymous
        return None
    if found and found.get("username") and found.get("password"):
        register_secret(str(found["password"]))  # never echoed, even by an error message
        log.info("registry %s: credentials from Docker's config", registry)
        return str(found["username"]), str(found["password"])
    log.info("registry %s: no credentials; anonymous", registry)
    return None
