"""Compose files for a recipe's service: the base service and the overlay's override.

Output is deterministic (sorted mounts, fixed key order) so it diffs cleanly.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tag import Tag

from patchkeeper.chat_template import CONTAINER_PATH as TEMPLATE_PATH
from patchkeeper.config.models import Service
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.lock import Lock

ROOTFS = "rootfs"
VANILLA = "vanilla"  # the image's own bytes of each overlaid file, never mounted
TEMPLATE_FILE = "chat_template.jinja"


def launch_command(service: Service, with_template: bool) -> list[str]:
    command = [
        *service.command,
        "--model-path",
        str(service.model.path),
        "--host",
        "0.0.0.0",
        "--port",
        str(service.port),
        *service.args,
    ]
    if with_template:
        command += ["--chat-template", TEMPLATE_PATH]
    return command


def project_name(recipe: str, service: Service) -> str:
    """The compose project the service runs under: the same every night, so tomorrow's
    `up` recreates today's container instead of clashing with its `container_name`."""
    if service.project:
        return service.project
    name = re.sub(r"[^a-z0-9_-]+", "-", recipe.lower()).strip("-_")
    return name or "patchkeeper"


def base_service(service: Service, image: str, project: str) -> dict[str, Any]:
    """The recipe's service as compose sees it, before any overlay, under its project."""
    volumes = (
        [f"{service.model.host_path}:{service.model.path}:ro"] if service.model.host_path else []
    )
    health = service.healthcheck
    spec: dict[str, Any] = {"image": image}
    if service.container_name:
        spec["container_name"] = service.container_name
    spec["command"] = launch_command(service, with_template=False)
    if service.environment:
        spec["environment"] = dict(sorted(service.environment.items()))
    if volumes or service.volumes:
        spec["volumes"] = [*volumes, *service.volumes]
    for key in ("network_mode", "ipc", "shm_size"):
        if getattr(service, key):
            spec[key] = getattr(service, key)
    if service.network_mode != "host" and "ports" not in service.passed_through:
        spec["ports"] = [f"{service.port}:{service.port}"]
    spec["healthcheck"] = {
        "test": list(health.test)
        if health.test
        else ["CMD-SHELL", f"curl -fsS http://127.0.0.1:{service.port}{health.path} || exit 1"],
        "interval": health.interval,
        "timeout": health.timeout,
        "retries": health.retries,
        "start_period": health.start_period,
    }
    if service.gpus is not None:
        device = {"driver": "nvidia", "count": service.gpus, "capabilities": ["gpu"]}
        spec["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    spec.update(service.passed_through)
    return {"name": project, "services": {service.name: spec}}


@dataclass(frozen=True)
class OverlayMount:
    """One file the overlay mounts read-only into the container, and what it must hash to."""

    source: Path  # absolute, for `docker run`
    relative: str  # inside the overlay directory (`rootfs/…`), for its compose files
    target: str
    sha256: str


def overlay_mounts(lock: Lock, overlay_dir: Path) -> list[OverlayMount]:
    """Every patched file at its path, then the derived chat template when there is one."""
    root = overlay_dir.resolve()
    inside = [
        (f"{ROOTFS}/{file.path.lstrip('/')}", file.path, file.patched_sha256)
        for file in sorted(lock.files, key=lambda f: f.path)
    ]
    if lock.chat_template:
        template = lock.chat_template
        inside.append((TEMPLATE_FILE, template.container_path, template.sha256))
    return [OverlayMount(root / path, path, target, sha) for path, target, sha in inside]


def override(service: Service, lock: Lock, root: str) -> dict[str, Any]:
    """Pin the image by digest and mount every patched file read-only at its path.

    Bind sources are `root` + the file's place in the overlay. The store writes its
    compose files with `root` = `../../.store/<its own directory>/`: relative, so a
    committed overlay works wherever it is checked out, yet naming the immutable
    directory, so reaching the file through a link that a later sync swaps
    (`<out>/<recipe>/latest/compose.yaml`) still records the store path in the
    container, and a `docker start` months later mounts the same bytes.
    """
    spec: dict[str, Any] = {"image": lock.image.pinned}
    if lock.chat_template:
        spec["command"] = launch_command(service, with_template=True)
    spec["volumes"] = [
        {"type": "bind", "source": root + m.relative, "target": m.target, "read_only": True}
        for m in overlay_mounts(lock, Path("."))
    ]
    return {"services": {service.name: spec}}


def absolute(document: dict[str, Any], overlay_dir: Path) -> dict[str, Any]:
    """The override with its relative bind sources resolved against `overlay_dir`."""
    root = overlay_dir.resolve()
    services = {}
    for name, spec in (document.get("services") or {}).items():
        volumes = [
            {**v, "source": os.path.normpath(root / v["source"])}
            if isinstance(v, dict) and not os.path.isabs(str(v.get("source", "/")))
            else v
            for v in spec.get("volumes") or []
        ]
        services[name] = {**spec, "volumes": volumes} if "volumes" in spec else dict(spec)
    return {"services": services}


def service_command(compose_file: Path, service: str) -> list[str]:
    """The command `compose_file` gives `service`: what `launch_command` rendered."""
    try:
        document = YAML(typ="safe").load(compose_file.read_text(encoding="utf-8"))
        command = document["services"][service]["command"]
    except (OSError, KeyError, TypeError, YAMLError) as err:
        raise ConfigError(f"{compose_file}: no command for service {service!r}: {err}") from None
    if not isinstance(command, list):
        raise ConfigError(f"{compose_file}: service {service!r} has no command list")
    return [str(arg) for arg in command]


def flag(command: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in a launch command; the last one wins, as
    with argparse."""
    value = None
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            value = command[i + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


# Plain scalars YAML 1.1 (docker-compose v1, PyYAML) reads as booleans or null, where
# YAML 1.2 (ruamel, Compose v2) reads strings: `restart: no` must stay a string for both.
_YAML11_SPECIAL = re.compile(
    r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|~|null|Null|NULL)$"
)


def _quoted(value: Any) -> Any:
    if isinstance(value, str) and _YAML11_SPECIAL.match(value):
        return DoubleQuotedScalarString(value)
    if isinstance(value, dict):
        return {k: _quoted(v) for k, v in value.items()}
    if isinstance(value, list):
        quoted = [_quoted(v) for v in value]
        tag = getattr(getattr(value, "tag", None), "value", None)
        if tag is None:
            return quoted
        tagged = CommentedSeq(quoted)  # Compose's `!override`/`!reset` must survive
        tagged.yaml_set_ctag(Tag(suffix=tag))
        return tagged
    return value


def dump(document: dict[str, Any]) -> str:
    document = _quoted(document)
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096  # keep long paths on one line
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()
