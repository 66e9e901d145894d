"""The running service of a recipe: which compose files make it, and what it runs now.

`up` moves a service from one overlay to the next under one compose project, so the
container (and its `container_name`) is recreated in place instead of clashing with
yesterday's. The service is either the overlay's own (`compose.yaml` +
`compose.override.yaml` from the store) or the user's own compose file with an
override rendered onto it: the digest pin, the read-only mounts at store paths, and
the chat-template argument appended to *their* command (argparse takes the last
`--chat-template`), so nothing of theirs is restated or lost.

Their hand patches mounted at paths the recipe adopted never outlive the night they
were for: Compose merges `volumes` by target, so an overlay file at that path
replaces their mount; when the overlay has none there (the nightly contains the
fix), their `volumes` are restated without it under Compose's `!override` tag (v2;
for v1, `compose_cli` applies the tag itself), so the image's own file is used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.tag import Tag

from patchkeeper.chat_template import CONTAINER_PATH as TEMPLATE_PATH
from patchkeeper.config.load import read_yaml
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import dump, overlay_mounts
from patchkeeper.overlay.lock import Lock, read_lock
from patchkeeper.overlay.write import BASE_COMPOSE, OVERRIDE_COMPOSE, STORE
from patchkeeper.paths import atomic_write

OVERRIDE_TAG = "!override"  # Compose v2.24+: replace the merged value, not merge into it


@dataclass(frozen=True)
class UserCompose:
    """`--compose FILE --service NAME`: the user's own file and service to layer onto."""

    file: Path
    service: str
    adopted: tuple[str, ...] = ()  # in-container paths of hand patches `init` adopted


@dataclass(frozen=True)
class Composed:
    """One overlay as a compose service: the files, project and service `up` drives."""

    overlay: Path  # the store directory
    lock: Lock
    files: tuple[Path, ...]
    project: str
    service: str
    override: str | None = None  # rendered onto the user's file (None: the overlay's own)
    bare: bool = False  # the user's own file alone, as they ran it before any overlay

    def without_overlay(self) -> Composed:
        """The user's service as their own file alone makes it (a rollback to before us)."""
        return replace(self, files=self.files[:1], override=None, bare=True)


def links_of(overlay: Path) -> Path:
    """`<out>/<recipe>/` for a store directory `<out>/.store/<dir>`."""
    if overlay.parent.name != STORE:
        raise ConfigError(f"{overlay}: not an overlay in a store (<out>/{STORE}/<dir>)")
    return overlay.parent.parent / read_lock(overlay).recipe


def normalise_project(name: str) -> str:
    """Compose's own rule (compose-go `NormalizeProjectName`): lower case, only
    `[a-z0-9_-]` kept, leading `_` and `-` stripped."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def project_of_file(file: Path, document: dict[str, Any]) -> str:
    """The project Compose itself gives `file`: `COMPOSE_PROJECT_NAME`, else its `name:`,
    else its directory's name, normalised as Compose does. (`up` asks Compose v2 itself,
    which also reads the project's `.env`; this is the rule for v1.)"""
    named = os.environ.get("COMPOSE_PROJECT_NAME") or document.get("name")
    name = normalise_project(str(named) if named else file.resolve().parent.name)
    if not name:
        raise ConfigError(f"{file}: cannot tell its compose project; give --project")
    return name


def user_command(file: Path, spec: dict[str, Any], service: str) -> list[str]:
    command = spec.get("command")
    if command is None:
        raise ConfigError(
            f"{file}: service {service!r} has no command; the chat template needs one to extend"
        )
    if isinstance(command, str):
        return shlex.split(command)
    return [str(arg) for arg in command]


def _target(volume: Any) -> str | None:
    """The in-container path of a compose `volumes` entry, short or long syntax."""
    if isinstance(volume, str):
        parts = volume.split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    if isinstance(volume, dict) and volume.get("target"):
        return str(volume["target"])
    return None


def adopted_override(
    lock: Lock, overlay: Path, file: Path, service: str, adopted: Sequence[str] = ()
) -> dict[str, Any]:
    """The override onto the user's service: pin, store-path mounts, their command +
    template, and none of their mounts left at an adopted path."""
    document = read_yaml(file) or {}
    spec = (document.get("services") or {}).get(service)
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: no service {service!r}")
    override: dict[str, Any] = {"image": lock.image.pinned}
    if lock.chat_template:
        override["command"] = [*user_command(file, spec, service), "--chat-template", TEMPLATE_PATH]
    ours = [
        {"type": "bind", "source": str(m.source), "target": m.target, "read_only": True}
        for m in overlay_mounts(lock, overlay)
    ]
    theirs = list(spec.get("volumes") or [])
    orphaned = set(adopted) - {m["target"] for m in ours}
    if not any(_target(v) in orphaned for v in theirs):
        override["volumes"] = ours  # merged by target: ours replace theirs
        return {"services": {service: override}}
    kept = [v for v in theirs if _target(v) not in orphaned]
    volumes = CommentedSeq([*kept, *ours])
    volumes.yaml_set_ctag(Tag(suffix=OVERRIDE_TAG))
    override["volumes"] = volumes
    return {"services": {service: override}}


def composed(
    overlay: Path, user: UserCompose | None, project: str | None, scratch: Path
) -> Composed:
    """How `overlay` runs: its own compose files, or `user`'s file plus a rendered override."""
    overlay = overlay.resolve()
    lock = read_lock(overlay)
    if user is None:
        base = read_yaml(overlay / BASE_COMPOSE) or {}
        name = project or str(base.get("name") or lock.recipe)
        files = (overlay / BASE_COMPOSE, overlay / OVERRIDE_COMPOSE)
        return Composed(overlay, lock, files, name, lock.service)
    document = read_yaml(user.file) or {}
    text = dump(adopted_override(lock, overlay, user.file, user.service, user.adopted))
    rendered = scratch / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.override.yaml"
    rendered.write_text(text, encoding="utf-8")
    name = project or project_of_file(user.file, document)
    return Composed(overlay, lock, (user.file, rendered), name, user.service, text)


def record_override(links: Path, running: Composed) -> None:
    """Keep the override now running next to the recipe's links, for hand-run compose."""
    if running.override is not None:
        atomic_write(links / f"{running.service}.override.yaml", running.override.encode())
