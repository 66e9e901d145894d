"""Wiring shared by the subcommands that run the pipeline."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Patchset, Recipe
from patchkeeper.errors import (
    ConfigError,
    ImageError,
    OutputError,
    PatchkeeperError,
    UnreachableError,
)
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ImageSource, SourceKind
from patchkeeper.image.registry import RegistrySource
from patchkeeper.image.registry_access import split_repository
from patchkeeper.image.tags import newer_than
from patchkeeper.pipeline import Plan, choose_image, plan
from patchkeeper.ui import progress_bars
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.github import with_github
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import UpstreamResolver
from patchkeeper.upstream.progress import GitFetchProgress

log = logging.getLogger(__name__)


def writable_dir(path: Path, what: str) -> None:
    """Preflight: fail in a second, before minutes of work, if `path` cannot be written.

    Probes the nearest existing directory with a temporary file (removed at once), so
    a check that passes leaves nothing behind."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(existing))
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".tmp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.ENOSPC:
            reason = "no space left on the device"
        raise OutputError(f"{what} {path}: not writable: {reason}") from None


@dataclass(frozen=True)
class SourceOptions:
    """Where images are read from (`--image-source`, `--layout`, `--platform`)."""

    kind: SourceKind = SourceKind.AUTO
    layout: Path | None = None
    platform: str = "linux/amd64"


def _in_engine(engine: EngineSource | None, ref: ImageRef) -> bool:
    if engine is None:
        return False
    try:
        engine.resolve(ref)
    except ImageError:
        return False
    return True


def pick_source(
    options: SourceOptions, recipe: Recipe, image: str | None, progress: object = None
) -> tuple[ImageSource, ImageRef]:
    """The cheapest source that has the image: the local engine costs no network bytes."""
    kind, layout, platform = options.kind, options.layout, options.platform
    if kind is SourceKind.LAYOUT or layout is not None:
        if layout is None:
            raise ConfigError("--image-source layout needs --layout PATH")
        source: ImageSource = LayoutSource(layout, platform, progress)
    elif kind is SourceKind.ENGINE:
        source = EngineSource()
    elif kind is SourceKind.REGISTRY:
        source = RegistrySource(platform, progress)
    else:
        daemon_down: UnreachableError | None = None
        try:
            engine: EngineSource | None = EngineSource()
        except UnreachableError as err:
            engine, daemon_down = None, err
            log.info("auto: the Docker daemon is down (%s); asking the registry", err)
        registry = RegistrySource(platform, progress)
        # The newest nightly is the registry's (sync before pulling); local tags only
        # with --image-source engine. The engine still serves an image it already has.
        try:
            ref = choose_image(recipe, registry, image)
        except (ImageError, UnreachableError) as err:
            if daemon_down is not None:  # the daemon is down too: usually the one to fix first
                raise type(err)(f"{daemon_down}; and {err}") from None
            if image:
                raise
            hint = "for an image only in the local engine, use --image-source engine"
            raise type(err)(f"{err} ({hint})") from None
        return (engine, ref) if engine and _in_engine(engine, ref) else (registry, ref)
    return source, choose_image(recipe, source, image)


def newer_nightly(recipe: Recipe, ref: ImageRef) -> list[str]:
    """Say so when the registry has a newer matching tag than the one used (best effort:
    one attempt, and silence when the registry cannot be asked)."""
    if not ref.tag:
        return []
    try:
        tags = RegistrySource(attempts=1).tags(ref.repository)
    except PatchkeeperError:
        return []
    newer = newer_than(tags, recipe.tag_pattern(), ref.tag)
    if newer is None:
        return []
    where = split_repository(ref.repository)[0]
    return [f"a newer nightly than {ref.tag} exists in {where}: {newer.tag}"]


def make_plan(
    recipe_path: Path, image: str | None, show_progress: bool, options: SourceOptions
) -> Plan:
    from patchkeeper.commands.validate import witness_problems

    recipe = load_recipe(recipe_path)
    patchsets = load_patchsets(recipe)
    misspelt = [f"{p.file}: {p.message}" for ps in patchsets for p in witness_problems(ps)]
    if misspelt:  # a witness that names no check would silently prove nothing
        raise ConfigError("\n".join(misspelt))
    with progress_bars(show_progress) as progress:
        source, ref = pick_source(options, recipe, image, progress)

        def resolver_for(patchset: Patchset) -> UpstreamResolver:
            label = f"fetching {patchset.upstream.clone_url}"
            git = GitResolver(
                patchset.upstream,
                GitMirror(patchset.upstream.clone_url),
                GitFetchProgress(progress, label),
            )
            return with_github(git)

        log.info("image %s from the %s source", ref, source.name)
        notices = newer_nightly(recipe, ref)
        return plan(recipe, patchsets, CachedSource(source), ref, resolver_for, notices)
