"""`patchkeeper sync`: plan, refuse on conflict, write the overlay, report."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK
from patchkeeper.overlay import compose
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.write import OverlayContent, write_overlay
from patchkeeper.pipeline import Plan
from patchkeeper.report import document, print_json, print_table
from patchkeeper.ui import err_console, out_console


def write(plan: Plan, out: Path) -> tuple[Path, bool, Lock]:
    """Write the plan's overlay under `out` (plans without conflicts only)."""
    recipe, service = plan.recipe, plan.recipe.service
    project = compose.project_name(recipe.name, service)
    content = OverlayContent(
        plan.overlay_files(),
        plan.vanilla_files(),
        plan.template,
        compose.dump(compose.base_service(service, str(plan.image.ref), project)),
        lambda root: compose.dump(compose.override(service, plan.lock, root)),
    )
    return write_overlay(out, recipe.name, plan.overlay_name, plan.lock, content)


def run(recipe: Path, image: str | None, out: Path, as_json: bool, source: SourceOptions) -> int:
    plan = make_plan(recipe, image, not as_json, source)
    if plan.conflicts:
        if as_json:
            print_json(document(plan.lock, image_read=plan.image_read), out_console)
        else:
            print_table(plan.lock, out_console)
            err_console.print("[red]sync refused: a patch does not apply; nothing was written[/]")
        return EXIT_CONFLICT
    overlay, created, lock = write(plan, out)
    if as_json:
        print_json(document(lock, overlay, created, plan.image_read), out_console)
    else:
        print_table(lock, out_console, overlay, plan.image_read)
        if not created:
            err_console.print("identical overlay already existed; left untouched")
    return EXIT_OK
