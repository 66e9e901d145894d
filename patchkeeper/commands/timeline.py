"""`patchkeeper status --tags N`: every patchset's patches x the last N nightly tags."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from patchkeeper.commands._common import SourceOptions, pick_source
from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Patchset
from patchkeeper.errors import EXIT_OK, ConfigError
from patchkeeper.image.identity import read_commit
from patchkeeper.image.model import ImageRef
from patchkeeper.image.tags import nightly_tags
from patchkeeper.timeline import Timeline, build, markdown
from patchkeeper.ui import out_console
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.github import with_github
from patchkeeper.upstream.mirror import GitMirror


@dataclass(frozen=True)
class Window:
    """Every patchset of a recipe against its last nightlies, and where the tags came from."""

    patchsets: tuple[Patchset, ...]
    timeline: Timeline
    asked: int
    where: str  # the tag list's origin, for messages


def compute(
    recipe_path: Path,
    count: int,
    tags_from: Path | None,
    verify_commits: bool,
    source: SourceOptions,
) -> Window:
    """Each patchset of the recipe against its last `count` nightlies."""
    recipe = load_recipe(recipe_path)
    patchsets = load_patchsets(recipe)
    image_source = None
    if tags_from is not None:
        try:
            text = tags_from.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{tags_from}: cannot read the tag list: {err}") from None
        names = [t.strip() for t in text.splitlines() if t.strip()]
        where = str(tags_from)
    else:
        image_source, _ = pick_source(source, recipe, None)
        names = image_source.tags(recipe.image)
        where = f"{recipe.image} ({image_source.name})"
    tags = nightly_tags(names, recipe.tag_pattern())[-count:]
    timelines = []
    for patchset in patchsets:
        resolver = GitResolver(patchset.upstream, GitMirror(patchset.upstream.clone_url))
        upstream = with_github(resolver)  # GitHub knows open from closed; git alone guesses
        upstream.prepare(patchset.patches)
        changes = [upstream.resolve(patchset.name, p) for p in patchset.patches]
        commits: list[str | None] = []
        for tag in tags:
            if verify_commits:
                if image_source is None:
                    image_source, _ = pick_source(source, recipe, f"{recipe.image}:{tag.tag}")
                image = image_source.resolve(ImageRef(recipe.image, tag.tag))
                commits.append(read_commit(image_source, image, patchset.source_root))
            else:
                commits.append(resolver.mirror.rev(tag.sha))
        timelines.append(build(resolver, changes, tags, commits))
    return Window(tuple(patchsets), sum(timelines[1:], timelines[0]), count, where)


def run(
    recipe_path: Path,
    count: int,
    tags_from: Path | None,
    verify_commits: bool,
    source: SourceOptions,
    output: str,
) -> int:
    timeline = compute(recipe_path, count, tags_from, verify_commits, source).timeline
    if output == "json":
        sys.stdout.write(json.dumps(_document(timeline), indent=2) + "\n")
    elif output == "markdown":
        sys.stdout.write(markdown(timeline))
    else:
        out_console.print(_table(timeline))
    return EXIT_OK


def _document(timeline: Timeline) -> dict[str, object]:
    return {
        "tags": [
            {"tag": t.tag, "date": t.date, "commit": c}
            for t, c in zip(timeline.tags, timeline.commits, strict=True)
        ],
        "patches": [
            {
                "id": row.change.id,
                "pr": row.change.patch.pr,
                "state": row.change.state,
                "merge_commit": row.change.merge_commit,
                "first_nightly": row.first(timeline.tags),
                "contained": list(row.contained),
            }
            for row in timeline.rows
        ],
    }


def _table(timeline: Timeline) -> Table:
    table = Table(title="patches x nightlies", caption="yes: in that nightly; ?: commit unknown")
    for column in ("patch", "state", "first nightly", *(t.date for t in timeline.tags)):
        table.add_column(column, no_wrap=True)
    mark = {True: "[green]yes[/]", False: "·", None: "?"}
    for row in timeline.rows:
        first = row.first(timeline.tags) or "none yet"
        table.add_row(row.label, row.change.state, first, *(mark[c] for c in row.contained))
    return table
