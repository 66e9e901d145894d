"""`patchkeeper down`: remove the container `up` brought up, found from the engine.

The user's project and service when the recipe adopted their compose file, the
recipe's own otherwise; from any directory (the recipe's overlay root, see
overlay/root.py). A container neither made by this recipe's overlays nor by its
compose file is refused by name (exit 2), never removed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from patchkeeper.commands.up import UpOptions
from patchkeeper.config.load import load_recipe, read_yaml
from patchkeeper.config.models import Recipe
from patchkeeper.errors import EXIT_OK, ConfigError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.overlay import compose_cli, driver, running
from patchkeeper.overlay.compose import project_name
from patchkeeper.overlay.root import overlays_root
from patchkeeper.overlay.service import UserCompose, composed, project_of_file
from patchkeeper.overlay.write import CURRENT, STORE, linked
from patchkeeper.ui import err_console, out_console, print_document


def _say(as_json: bool, line: str) -> None:
    """One unwrapped line; with --json on stderr, stdout holding the one document."""
    (err_console if as_json else out_console).print(
        line, soft_wrap=True, markup=False, highlight=False
    )


@dataclass(frozen=True)
class _Service:
    """The service `down` removes, and the recipe whose container it may be."""

    project: str
    service: str
    container_name: str | None
    recipe: str


def run(recipe: Path | None, overlay: Path | None, options: UpOptions) -> int:
    """Remove the container `up` brought up (its project's other services stay)."""
    user, loaded, gone = options.user, None, None
    if overlay is None:
        if recipe is None:
            raise ConfigError("give --recipe or --overlay DIR")
        loaded = load_recipe(recipe)
        links = overlays_root(loaded, options.out) / loaded.name
        user = driver.user_of(loaded, user)
        overlay = linked(links / CURRENT)  # None when missing or dangling: ask the engine
        if overlay is None and (links / CURRENT).is_symlink():  # its store directory removed
            gone = links.parent / STORE / Path(os.readlink(links / CURRENT)).name
    compose = compose_cli.find()
    project = driver.project_for(compose, user, options.project)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-down-") as scratch:
        if overlay is not None:
            target = composed(overlay, user, project, Path(scratch))
            spec = driver.service_model(compose, target)
            name = spec.get("container_name")
            named = _Service(
                target.project, target.service, str(name) if name else None, target.lock.recipe
            )
        else:
            assert loaded is not None
            named = _unproven(loaded, user, project)
    found = running.find(EngineSource().client, named.project, named.service, named.container_name)
    if found is None:
        _say(
            options.as_json,
            f"down: no container of service {named.service} in project {named.project} exists",
        )
        return _down_document(options, named, None, "nothing")
    _down_origin(found, named, user, gone)
    if options.dry_run:
        _say(
            options.as_json,
            f"dry run: would remove {found.name} (service {named.service} of {named.project})",
        )
        return _down_document(options, named, found.name, "dry-run")
    with driver.serialised(named.project):
        try:
            found.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            raise UnreachableError(f"removing container {found.name}: {err}") from None
    _say(
        options.as_json,
        f"down: removed {found.name} (service {named.service} of compose project {named.project})",
    )
    return _down_document(options, named, found.name, "removed")


def _unproven(recipe: Recipe, user: UserCompose | None, project: str | None) -> _Service:
    """The service of a recipe without a `current` link, from its compose file or itself."""
    if user is not None:
        document = read_yaml(user.file) or {}
        spec = (document.get("services") or {}).get(user.service) or {}
        name = spec.get("container_name")
        return _Service(
            project or project_of_file(user.file, document),
            user.service,
            str(name) if name else None,
            recipe.name,
        )
    service = recipe.service
    return _Service(
        project or project_name(recipe.name, service),
        service.name,
        service.container_name,
        recipe.name,
    )


def _down_origin(
    found: running.Running, named: _Service, user: UserCompose | None, gone: Path | None
) -> None:
    """Refuse a container neither this recipe's `up` nor its compose file made (`gone`:
    the removed store directory a dangling `current` names, which made it too)."""
    if found.project != named.project:
        raise ConfigError(
            f"container {found.name} is not in compose project {named.project!r} "
            f"(its project: {found.project or 'none'}); refusing to remove it"
        )
    if user is not None and found.made_from(user.file):
        return
    if gone is not None and any(f.parent.resolve() == gone.resolve() for f in found.files):
        return
    store = found.store_overlay()
    lock = running.overlay_lock(store) if store is not None else None
    if lock is None or lock.recipe != named.recipe:
        made = ", ".join(map(str, found.files)) or "no compose file"
        raise ConfigError(
            f"container {found.name} of compose project {named.project!r} was made from {made}, "
            f"not by recipe {named.recipe!r} nor its compose file; refusing to remove it"
        )


def _down_document(options: UpOptions, named: _Service, container: str | None, result: str) -> int:
    if options.as_json:
        body = {
            "recipe": named.recipe,
            "project": named.project,
            "service": named.service,
            "container": container,
            "result": result,
        }
        print_document("down", body)
    return EXIT_OK
