"""`patchkeeper sync`: plan, refuse on conflict, write the overlay, report."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands._common import SourceOptions, make_plan, writable_dir
from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, OutputError
from patchkeeper.overlay import compose
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.root import overlays_root
from patchkeeper.overlay.write import OverlayContent, write_overlay
from patchkeeper.patching.conflicts import refuse_overwriting, unmarked, write_conflicts
from patchkeeper.pipeline import Plan
from patchkeeper.report import document, print_table
from patchkeeper.ui import err_console, out_console, print_document


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
    try:
        return write_overlay(out, recipe.name, plan.overlay_name, plan.lock, content)
    except OSError as err:  # read-only, full, or a quota: the half-built copy is removed
        where = err.filename or out
        raise OutputError(
            f"{where}: cannot write the overlay ({err.strerror or err}); nothing was "
            f"written and the previous overlay and its link are untouched"
        ) from None


def with_conflict_files(lock: Lock, written: dict[tuple[str, str], Path]) -> Lock:
    """The lock with each conflicting file's diff3-marked copy named."""
    patches = [
        patch.model_copy(
            update={
                "files": [
                    f.model_copy(update={"conflict_file": str(written[(patch.id, f.path)])})
                    if (patch.id, f.path) in written
                    else f
                    for f in patch.files
                ]
            }
        )
        for patch in lock.patches
    ]
    return lock.model_copy(update={"patches": patches})


def _write_conflicts(plan: Plan, conflicts: Path) -> dict[tuple[str, str], Path]:
    try:
        return write_conflicts(plan.conflicts, conflicts)
    except OSError as err:  # full, or changed under us since the preflight
        raise OutputError(
            f"{err.filename or conflicts}: cannot write the conflicts "
            f"({err.strerror or err}); nothing was synced"
        ) from None


def _say_what_to_resolve(
    recipe: Path, conflicts: Path, written: dict[tuple[str, str], Path], local: list[str]
) -> None:
    if written:
        err_console.print(
            f"diff3-marked files in {conflicts}: resolve them, then "
            f"`patchkeeper resolve --recipe {recipe} --conflicts {conflicts}`",
            markup=False,
        )
    for file in local:
        err_console.print(
            f"{file}: matched exactly (no upstream blob to merge against), so no marked "
            "file: update the diff file against the image's file",
            markup=False,
        )


def run(
    recipe: Path,
    image: str | None,
    out: Path | None,
    as_json: bool,
    source: SourceOptions,
    conflicts: Path | None = None,
) -> int:
    out = overlays_root(load_recipe(recipe), out)
    writable_dir(out, "--out")
    if conflicts is not None:
        writable_dir(conflicts, "--conflicts")
        patchsets = load_patchsets(load_recipe(recipe))
        refuse_overwriting(conflicts, {p.name: p.path for p in patchsets})
    plan = make_plan(recipe, image, not as_json, source)
    if plan.conflicts:
        lock, written = plan.lock, dict[tuple[str, str], Path]()
        if conflicts is not None:
            written = _write_conflicts(plan, conflicts)
            lock = with_conflict_files(lock, written)
        if as_json:
            print_document("sync", document(lock, image_read=plan.image_read))
        else:
            print_table(lock, out_console)
            err_console.print("[red]sync refused: a patch does not apply; nothing was written[/]")
            if conflicts is not None:
                _say_what_to_resolve(recipe, conflicts, written, unmarked(plan.conflicts))
        return EXIT_CONFLICT
    overlay, created, lock = write(plan, out)
    if as_json:
        print_document("sync", document(lock, overlay, created, plan.image_read))
    else:
        print_table(lock, out_console, overlay, plan.image_read)
        if not created:
            err_console.print("identical overlay already existed; left untouched")
    return EXIT_OK
