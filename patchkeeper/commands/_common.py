"""Wiring shared by the subcommands that run the pipeline."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Patchset
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.pipeline import Plan, choose_image, plan
from patchkeeper.ui import GitFetchProgress, progress_bars
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror


def make_plan(recipe_path: Path, image: str | None, show_progress: bool) -> Plan:
    recipe = load_recipe(recipe_path)
    patchsets = load_patchsets(recipe)
    source = CachedSource(EngineSource())
    ref = choose_image(recipe, source, image)
    with progress_bars(show_progress) as progress:

        def resolver_for(patchset: Patchset) -> GitResolver:
            label = f"fetching {patchset.upstream.clone_url}"
            return GitResolver(
                patchset.upstream,
                GitMirror(patchset.upstream.clone_url),
                GitFetchProgress(progress, label),
            )

        return plan(recipe, patchsets, source, ref, resolver_for)
