"""`patchkeeper prune`: retire patches every tracked nightly already contains."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands._common import SourceOptions
from patchkeeper.commands.timeline import compute
from patchkeeper.config.edit import retire
from patchkeeper.errors import EXIT_OK
from patchkeeper.ui import out_console


def run(
    recipe: Path, count: int, tags_from: Path | None, source: SourceOptions, write: bool
) -> int:
    patchset, timeline = compute(recipe, count, tags_from, False, source)
    if not timeline.tags:
        out_console.print("no nightly tags tracked: nothing can be retired")
        return EXIT_OK
    oldest, newest = timeline.tags[0].tag, timeline.tags[-1].tag
    retirements = [
        (
            row.change.patch.key,
            f"in every tracked nightly ({len(timeline.tags)} tags, {oldest} .. {newest}); "
            f"first in {row.first(timeline.tags)}",
        )
        for row in timeline.rows
        if row.contained and all(cell is True for cell in row.contained)
    ]
    for key, reason in retirements:
        out_console.print(f"retire {key}: {reason}")
    if not retirements:
        out_console.print("every patch is still needed by some tracked nightly")
    elif write:
        retire(patchset.path, retirements)
        out_console.print(f"updated {patchset.path}")
    else:
        out_console.print("dry run: pass --write to edit the patchset")
    return EXIT_OK
