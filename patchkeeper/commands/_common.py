"""Wiring shared by the subcommands that run the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Patchset, Recipe
from patchkeeper.errors import ConfigError, ImageError, PatchkeeperError, UnreachableError
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ImageSource
from patchkeeper.image.registry import RegistrySource, split_repository
from patchkeeper.image.tags import newer_than
from patchkeeper.pipeline import Plan, choose_image, plan
from patchkeeper.ui import GitFetchProgress, progress_bars
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.github import with_github
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import UpstreamResolver


class SourceKind(StrEnum):
    AUTO = "auto"
    ENGINE = "engine"
    REGISTRY = "registry"
    LAYOUT = "layout"


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
        try:
            engine: EngineSource | None = EngineSource()
        except UnreachableError:
            engine = None
        registry = RegistrySource(platform, progress)
        # The newest nightly is the registry's (sync before pulling); local tags only
        # with --image-source engine. The engine still serves an image it already has.
        try:
            ref = choose_image(recipe, registry, image)
        except (ImageError, UnreachableError) as err:
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
    recipe = load_recipe(recipe_path)
    patchsets = load_patchsets(recipe)
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

        notices = newer_nightly(recipe, ref)
        return plan(recipe, patchsets, CachedSource(source), ref, resolver_for, notices)
