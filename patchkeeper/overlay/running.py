"""What the engine runs for a service, read from the container itself, never from our links.

A user may have run `docker compose up -d` by hand (bringing back yesterday's hand
patch), or another recipe may share the compose project: `up` and `down` judge the
container's own truth (its compose labels, image and bind mounts) against the
overlay `current` names, and act only on a container whose origin they know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from patchkeeper.errors import ConfigError, UnreachableError
from patchkeeper.overlay.compose import overlay_mounts
from patchkeeper.overlay.lock import LOCK_NAME, Lock, read_lock

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
FILES_LABEL = "com.docker.compose.project.config_files"
DIRECTORY_LABEL = "com.docker.compose.project.working_dir"


@dataclass(frozen=True)
class Running:
    """One container of the service, as the engine reports it."""

    container: Any
    name: str
    status: str
    project: str | None
    files: tuple[Path, ...]  # the compose files it was created from
    directory: Path | None  # its project directory (v1 names copies of the files)
    image_id: str
    mounts: dict[str, str]  # container path -> host source

    def store_overlay(self) -> Path | None:
        """The overlay store directory its compose files came from, when they did."""
        places = [f.parent for f in self.files] + ([self.directory] if self.directory else [])
        for place in places:
            for directory in (place, *place.parents):
                if (directory / LOCK_NAME).is_file():
                    return directory.resolve()
        return None

    def made_from(self, file: Path) -> bool:
        """Whether `file` made it: named in its labels, or (v1) its project's directory."""
        if file.resolve() in {f.resolve() for f in self.files}:
            return True
        return self.directory is not None and self.directory.resolve() == file.resolve().parent


def _running(container: Any) -> Running:
    labels = container.labels or {}
    files = tuple(Path(f) for f in labels.get(FILES_LABEL, "").split(",") if f)
    mounts = {
        str(m.get("Destination")): str(m.get("Source"))
        for m in container.attrs.get("Mounts") or []
        if m.get("Type") == "bind"
    }
    state = (container.attrs.get("State") or {}).get("Status", "unknown")
    return Running(
        container,
        container.name,
        str(state),
        labels.get(PROJECT_LABEL),
        files,
        Path(labels[DIRECTORY_LABEL]) if labels.get(DIRECTORY_LABEL) else None,
        str(container.attrs.get("Image", "")),
        mounts,
    )


def find(client: Any, project: str, service: str, container_name: str | None) -> Running | None:
    """The service's container: by its compose labels, else by its `container_name`."""
    try:
        found = client.containers.list(
            all=True,
            filters={"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]},
        )
        if not found and container_name:
            try:
                found = [client.containers.get(container_name)]
            except docker.errors.NotFound:
                found = []
    except docker.errors.APIError as err:
        raise UnreachableError(f"Docker daemon error listing containers: {err}") from None
    return _running(found[0]) if found else None


def mismatches(running: Running, overlay: Path, lock: Lock, image_id: str | None) -> list[str]:
    """How the running container differs from `overlay`, one sentence each (none: it runs it)."""
    found = []
    if image_id is not None and running.image_id != image_id:
        found.append(
            f"the running container {running.name} runs image {running.image_id[:19]}, "
            f"not this overlay's {lock.image.ref} ({image_id[:19]})"
        )
    for mount in overlay_mounts(lock, overlay):
        source = running.mounts.get(mount.target)
        if source is None:
            found.append(
                f"the running container {running.name} mounts nothing at {mount.target}: "
                "someone ran compose without the override"
            )
        elif Path(source).resolve() != mount.source.resolve():
            found.append(
                f"the running container {running.name} mounts {source} at {mount.target}, "
                "not this overlay: someone ran compose without the override"
            )
    return found


def overlay_lock(directory: Path) -> Lock | None:
    """The lock of a store directory a container was made from (None when unreadable)."""
    try:
        return read_lock(directory)
    except (ConfigError, OSError):  # half-removed or foreign: its origin is unknown
        return None
