"""`patchkeeper gc`: remove store directories nothing refers to. Dry run by default.

A store directory stays while any of these holds: a link under `<out>/<recipe>/`
names it (a tag, `latest`, `current`, `previous`); it is one of its recipe's last
`keep` syncs; or a container, running or stopped, mounts from it (`docker start`
would need it back). Without the engine nothing is removed: an unseen container
would lose its files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from patchkeeper.errors import EXIT_OK, ConfigError
from patchkeeper.image.engine import EngineSource
from patchkeeper.overlay.lock import LOCK_NAME, read_lock
from patchkeeper.overlay.write import STORE
from patchkeeper.ui import out_console


@dataclass(frozen=True)
class Verdict:
    directory: Path
    kept_by: list[str]  # empty: removable


def _linked(out: Path) -> dict[Path, list[str]]:
    names: dict[Path, list[str]] = {}
    for recipe in sorted(p for p in out.iterdir() if p.is_dir() and p.name != STORE):
        for link in sorted(recipe.iterdir()):
            if link.is_symlink():
                names.setdefault(link.resolve(), []).append(f"link {recipe.name}/{link.name}")
    return names


def _mounted(client: Any, store: Path) -> dict[Path, list[str]]:
    names: dict[Path, list[str]] = {}
    root = f"{store}/"
    for container in client.containers.list(all=True):
        for mount in container.attrs.get("Mounts") or []:
            source = str(mount.get("Source", ""))
            if source.startswith(root):
                directory = store / Path(source[len(root) :]).parts[0]
                by = f"container {container.name} ({container.status})"
                if by not in names.setdefault(directory, []):
                    names[directory].append(by)
    return names


def verdicts(out: Path, keep: int, client: Any) -> list[Verdict]:
    store = (out / STORE).resolve()
    if not store.is_dir():
        raise ConfigError(f"{out}: no overlay store here ({STORE}/ is missing)")
    directories = [p for p in store.iterdir() if p.is_dir() and (p / LOCK_NAME).is_file()]
    newest: dict[str, list[Path]] = {}
    for directory in sorted(directories, key=lambda p: p.stat().st_mtime, reverse=True):
        newest.setdefault(read_lock(directory).recipe, []).append(directory)
    recent = {d for dirs in newest.values() for d in dirs[:keep]}
    linked, mounted = _linked(out), _mounted(client, store)
    found = []
    for directory in sorted(directories):
        kept = [*linked.get(directory, []), *mounted.get(directory, [])]
        if directory in recent:
            kept.append(f"one of the last {keep} syncs")
        found.append(Verdict(directory, kept))
    return found


def run(out: Path, keep: int, delete: bool) -> int:
    if keep < 0:
        raise ConfigError(f"--keep {keep}: must be 0 or more")
    client = EngineSource().client  # unreachable: exit 3, nothing removed
    with FileLock(str(out / ".patchkeeper.lock")):
        found = verdicts(out, keep, client)
        for verdict in found:
            name = verdict.directory.name
            if verdict.kept_by:
                out_console.print(f"keep    {name}: {', '.join(verdict.kept_by)}", soft_wrap=True)
            elif delete:
                _remove(verdict.directory)
                out_console.print(f"removed {name}", soft_wrap=True)
            else:
                out_console.print(f"would remove {name}", soft_wrap=True)
    removable = sum(1 for v in found if not v.kept_by)
    if removable and not delete:
        out_console.print(f"dry run: {removable} removable; run with --delete to remove them")
    return EXIT_OK


def _remove(directory: Path) -> None:
    """Rename away first (atomic: never half a directory under its name), then delete."""
    doomed = directory.with_name(f".tmp-gc-{directory.name}-{os.getpid()}")
    os.rename(directory, doomed)
    shutil.rmtree(doomed)
