"""Human and machine renderings of a plan: a Rich table, or one JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from patchkeeper.overlay.lock import Lock, LockedPatch

_ACTION = {
    "upstream": "none",
    "applied": "overlay",
    "partial": "overlay (rest present)",
    "conflict": "CONFLICT",
}
_STYLE = {"upstream": "green", "applied": "cyan", "partial": "yellow", "conflict": "bold red"}


def document(
    lock: Lock,
    overlay: Path | None = None,
    created: bool | None = None,
    image_read: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `--json` contract: the lock, where the overlay is, and what reading the image cost."""
    doc = lock.model_dump(mode="json")
    if image_read is not None:
        doc["image_read"] = image_read
    doc["overlay"] = str(overlay) if overlay else None
    if created is not None:
        doc["overlay_created"] = created
    return doc


def print_json(doc: dict[str, Any], console: Console) -> None:
    console.print_json(json.dumps(doc), highlight=False)


def _in_image(patch: LockedPatch) -> str:
    if patch.state == "upstream":
        return "yes (ancestry)" if patch.via == "ancestry" else "yes (content)"
    if patch.state == "partial":
        return "partly"
    return "no"


def print_table(
    lock: Lock,
    console: Console,
    overlay: Path | None = None,
    image_read: dict[str, Any] | None = None,
) -> None:
    image = lock.image
    console.print(f"[bold]{image.ref}[/]  {image.digest or image.id}  source commit {image.commit}")
    table = Table(caption="hunks: applied/present/conflict", min_width=0)
    for column in ("patch", "why", "merged?", "in image?", "action", "hunks"):
        if column == "why":
            table.add_column(column, overflow="fold", min_width=24)
        else:
            table.add_column(column, no_wrap=True)
    for patch in lock.patches:
        label = f"#{patch.pr}" if patch.pr else patch.id
        hunks = f"{patch.hunks.applied}/{patch.hunks.present}/{patch.hunks.conflict}"
        style = _STYLE.get(patch.state, "")
        table.add_row(
            label,
            patch.why,
            patch.pr_state,
            _in_image(patch),
            f"[{style}]{_ACTION[patch.state]}[/]",
            hunks,
        )
    console.print(table)
    for patch in lock.patches:
        for file in patch.files:
            if file.action == "conflict":
                where = f"[red]conflict[/] {patch.id} {file.path}"
                bad = [h for h in file.hunks if h.status == "conflict"]
                if not bad:
                    console.print(f"{where}: {file.note}")
                for hunk in bad:
                    console.print(f"{where} {hunk.header}: {hunk.reason}")
            elif file.note:
                console.print(f"[yellow]note[/] {patch.id} {file.path}: {file.note}")
    for warning in lock.warnings:
        console.print(f"[yellow]warning[/] {warning}")
    if image_read and image_read.get("layers"):
        console.print(
            f"read from {image_read['source']}: {image_read['fetched_bytes']:,} of "
            f"{image_read['image_bytes']:,} image bytes fetched"
        )
    if overlay:
        console.print(f"overlay: {overlay}  ({len(lock.files)} file(s) mounted read-only)")
