"""`patchkeeper gc`: remove store directories nothing needs. Dry run by default.

A store directory stays while any of these holds: a recipe's `current` or `previous`
link names it (what runs, and what a rollback returns to); a container, running or
stopped, mounts from it (`docker start` would need it back); or it is one of its
recipe's last `keep` syncs, newest first (a sync's time: when it wrote the directory
or last pointed a tag or `latest` at it). A tag or `latest` link keeps nothing: it is
removed with the directory it names. Mounts and the store are compared resolved, so
an `<out>` reached through a symlink is still seen. Without the engine nothing is
removed: an unseen container would lose its files.
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
from patchkeeper.overlay.write import CURRENT, PREVIOUS, STORE
from patchkeeper.ui import out_console, print_document

PINNING = (CURRENT, PREVIOUS)  # the links that keep what they name


@dataclass(frozen=True)
class Verdict:
    directory: Path
    kept_by: list[str]  # empty: removable
    links: list[Path]  # tag and `latest` links naming it: removed with it

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.directory.name,
            "path": str(self.directory),
            "kept_by": self.kept_by,
            "links": [f"{link.parent.name}/{link.name}" for link in self.links],
        }


def _links(out: Path, store: Path) -> dict[Path, list[Path]]:
    """Every recipe link under `out`, by the (resolved) store directory it names."""
    found: dict[Path, list[Path]] = {}
    for recipe in sorted(p for p in out.iterdir() if p.is_dir() and p.name != STORE):
        for link in sorted(recipe.iterdir()):
            if link.is_symlink() and link.resolve().parent == store:
                found.setdefault(link.resolve(), []).append(link)
    return found


def _mounted(client: Any, store: Path) -> dict[Path, list[str]]:
    """Containers mounting from the store, by directory; each bind source resolved, as
    Compose records the path it was given (through a symlinked `<out>`, say)."""
    names: dict[Path, list[str]] = {}
    # One listing (a container removed meanwhile cannot fail a per-container inspect).
    for container in client.api.containers(all=True):
        name = str((container.get("Names") or [container.get("Id", "?")])[0]).lstrip("/")
        for mount in container.get("Mounts") or []:
            source = Path(str(mount.get("Source") or "/")).resolve()
            if not source.is_relative_to(store) or source == store:
                continue
            directory = store / source.relative_to(store).parts[0]
            by = f"container {name} ({container.get('State')})"
            if by not in names.setdefault(directory, []):
                names[directory].append(by)
    return names


def _synced_at(directory: Path, links: list[Path]) -> float:
    """When a sync last wrote `directory` or pointed a tag or `latest` at it."""
    named = [link.lstat().st_mtime for link in links if link.name not in PINNING]
    return max([directory.stat().st_mtime, *named])


def verdicts(out: Path, keep: int, client: Any) -> list[Verdict]:
    store = (out / STORE).resolve()
    if not store.is_dir():
        raise ConfigError(f"{out}: no overlay store here ({STORE}/ is missing)")
    directories = [
        p
        for p in store.iterdir()
        if not p.name.startswith(".") and p.is_dir() and (p / LOCK_NAME).is_file()
    ]
    links, mounted = _links(out, store), _mounted(client, store)
    by_recipe: dict[str, list[Path]] = {}
    unreadable: dict[Path, str] = {}
    for directory in directories:
        try:
            by_recipe.setdefault(read_lock(directory).recipe, []).append(directory)
        except ConfigError as err:
            unreadable[directory] = f"its lock is unreadable ({err})"
    recent: set[Path] = set()
    for dirs in by_recipe.values():
        dirs.sort(key=lambda d: _synced_at(d, links.get(d, [])), reverse=True)
        recent.update(dirs[:keep])
    found = []
    for directory in sorted(directories):
        named = links.get(directory, [])
        kept = [f"link {p.parent.name}/{p.name}" for p in named if p.name in PINNING]
        kept += mounted.get(directory, [])
        if directory in recent:
            kept.append(f"one of the last {keep} syncs")
        if directory in unreadable:
            kept.append(unreadable[directory])
        trimmed = [p for p in named if p.name not in PINNING]
        found.append(Verdict(directory, kept, trimmed))
    return found


def _usable(out: Path) -> None:
    if not out.exists():
        raise ConfigError(f"--out {out}: no such directory")
    if not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory (give the overlay root)")


def run(out: Path, keep: int, delete: bool, as_json: bool = False) -> int:
    if keep < 0:
        raise ConfigError(f"--keep {keep}: must be 0 or more")
    _usable(out)
    client = EngineSource().client  # unreachable: exit 3, nothing removed
    with FileLock(str(out / ".patchkeeper.lock")):
        found = verdicts(out, keep, client)
        for verdict in found:
            if not verdict.kept_by and delete:
                _remove(verdict)
    removable = [v for v in found if not v.kept_by]
    if as_json:
        body = {
            "out": str(out),
            "keep": keep,
            "deleted": delete,
            "kept": [v.as_json() for v in found if v.kept_by],
            "removable": [v.as_json() for v in removable],
        }
        print_document("gc", body)
        return EXIT_OK
    for verdict in found:
        name = verdict.directory.name
        links = ", ".join(f"{p.parent.name}/{p.name}" for p in verdict.links)
        with_links = f" (and its links {links})" if links else ""
        if verdict.kept_by:
            line = f"keep    {name}: {', '.join(verdict.kept_by)}"
        elif delete:
            line = f"removed {name}{with_links}"
        else:
            line = f"would remove {name}{with_links}"
        out_console.print(line, soft_wrap=True, markup=False, highlight=False)
    if removable and not delete:
        out_console.print(f"dry run: {len(removable)} removable; run with --delete to remove them")
    return EXIT_OK


def _remove(verdict: Verdict) -> None:
    """Its tag links first (never a link to nothing), then the directory: renamed away
    first (atomic: never half a directory under its name), then deleted."""
    for link in verdict.links:
        link.unlink(missing_ok=True)
    directory = verdict.directory
    doomed = directory.with_name(f".tmp-gc-{directory.name}-{os.getpid()}")
    os.rename(directory, doomed)
    shutil.rmtree(doomed)
