"""`patchkeeper status`: the per-patch states for one image; nothing written."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK
from patchkeeper.report import document, print_table
from patchkeeper.ui import out_console, print_document


def run(recipe: Path, image: str | None, as_json: bool, source: SourceOptions) -> int:
    plan = make_plan(recipe, image, not as_json, source)
    if as_json:
        print_document("status", document(plan.lock, image_read=plan.image_read))
    else:
        print_table(plan.lock, out_console, image_read=plan.image_read)
    return EXIT_CONFLICT if plan.conflicts else EXIT_OK
