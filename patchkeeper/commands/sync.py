"""`patchkeeper sync`: plan, refuse on conflict, write the overlay, report."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands._common import SourceOptions, make_plan, writable_dir
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, OutputError
from patchkeeper.overlay import compose
from patchkeeper.overlay.write import write_overlay
from patchkeeper.pipeline import Plan
from patchkeeper.report import document, print_table
from patchkeeper.ui import err_console, out_console, print_document


def write(plan: Plan, out: Path) -> tuple[Path, bool]:
    """Write the plan's overlay under `out` (plans without conflicts only)."""
    service = plan.recipe.service
    try:
        return write_overlay(
            out,
            plan.overlay_name,
            plan.lock,
            plan.overlay_files(),
            plan.vanilla_files(),
            plan.template,
            compose.dump(compose.base_service(service, str(plan.image.ref))),
            compose.dump(compose.override(service, plan.lock)),
        )
    except OSError as err:  # read-only, full, or a quota: the half-built copy is removed
        where = err.filename or out
        raise OutputError(
            f"{where}: cannot write the overlay ({err.strerror or err}); nothing was "
            f"written and the previous overlay and its link are untouched"
        ) from None


def run(recipe: Path, image: str | None, out: Path, as_json: bool, source: SourceOptions) -> int:
    writable_dir(out, "--out")
    plan = make_plan(recipe, image, not as_json, source)
    if plan.conflicts:
        if as_json:
            print_document("sync", document(plan.lock, image_read=plan.image_read))
        else:
            print_table(plan.lock, out_console)
            err_console.print("[red]sync refused: a patch does not apply; nothing was written[/]")
        return EXIT_CONFLICT
    overlay, created = write(plan, out)
    if as_json:
        print_document("sync", document(plan.lock, overlay, created, plan.image_read))
    else:
        print_table(plan.lock, out_console, overlay, plan.image_read)
        if not created:
            err_console.print("identical overlay already existed; left untouched")
    return EXIT_OK
