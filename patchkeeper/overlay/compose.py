"""Compose files for a recipe's service: the base service and the overlay's override.

Output is deterministic (sorted mounts, fixed key order) so it diffs cleanly.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from patchkeeper.chat_template import CONTAINER_PATH as TEMPLATE_PATH
from patchkeeper.config.models import Service
from patchkeeper.overlay.lock import Lock

ROOTFS = "rootfs"
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


def base_service(service: Service, image: str) -> dict[str, Any]:
    """The recipe's service as compose sees it, before any overlay."""
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
    if service.network_mode != "host":
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
    return {"services": {service.name: spec}}


def override(service: Service, lock: Lock, overlay_dir: Path) -> dict[str, Any]:
    """Pin the image by digest and mount every patched file read-only at its path."""
    root = overlay_dir.resolve()
    mounts = [
        {
            "type": "bind",
            "source": str(root / ROOTFS / file.path.lstrip("/")),
            "target": file.path,
            "read_only": True,
        }
        for file in sorted(lock.files, key=lambda f: f.path)
    ]
    spec: dict[str, Any] = {"image": lock.image.pinned}
    if lock.chat_template:
        mounts.append(
            {
                "type": "bind",
                "source": str(root / TEMPLATE_FILE),
                "target": lock.chat_template.container_path,
                "read_only": True,
            }
        )
        spec["command"] = launch_command(service, with_template=True)
    spec["volumes"] = mounts
    return {"services": {service.name: spec}}


def dump(document: dict[str, Any]) -> str:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096  # keep long paths on one line
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()
