"""Renderings of a plan: a Rich table, one JSON document, or Markdown for GitHub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchkeeper import markdown as md
from patchkeeper.overlay.lock import Lock, LockedPatch
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, PatchState

_ACTION = {
    PatchState.UPSTREAM: "none",
    PatchState.APPLIED: "overlay",
    PatchState.PARTIAL: "overlay (rest present)",
    PatchState.CONFLICT: "CONFLICT",
}
_COLUMNS = ("patch", "why", "merged?", "in image?", "action", "hunks")
_PROBLEM_STYLE = {"conflict": "red", "drift": "yellow", "note": "yellow", "warning": "yellow"}
_STYLE = {
    PatchState.UPSTREAM: "green",
    PatchState.APPLIED: "cyan",
    PatchState.PARTIAL: "yellow",
    PatchState.CONFLICT: "bold red",
}


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


def _in_image(patch: LockedPatch) -> str:
    if patch.state is PatchState.UPSTREAM:
        return f"yes ({patch.via or 'content'})"
    if patch.state is PatchState.PARTIAL:
        return "partly"
    return "no"


def _row(patch: LockedPatch) -> tuple[str, str, str, str, str, str]:
    """(patch, why, merged?, in image?, action, hunks): one row of every rendering."""
    label = f"#{patch.pr}" if patch.pr else patch.id
    hunks = f"{patch.hunks.applied}/{patch.hunks.present}/{patch.hunks.conflict}"
    hunks += f" ({patch.hunks.drift} drift)" if patch.hunks.drift else ""
    return label, patch.why, patch.pr_state, _in_image(patch), _ACTION[patch.state], hunks


def _problems(lock: Lock) -> list[str]:
    """Conflicting and drifted hunks, notes and warnings, one line each (markup-free)."""
    lines = []
    for patch in lock.patches:
        for file in patch.files:
            lines += [
                f"drift {patch.id} {file.path} {hunk.header}: its context had changed; "
                f"placed by the three-way merge at line {hunk.line}"
                for hunk in file.hunks
                if hunk.status is HunkStatus.DRIFTED
            ]
            if file.action is FileAction.CONFLICT:
                bad = [h for h in file.hunks if h.status is HunkStatus.CONFLICT]
                where = f"conflict {patch.id} {file.path}"
                lines += [f"{where}: {file.note}"] if file.note else []
                lines += [f"{where} {hunk.header}: {hunk.reason}" for hunk in bad]
                lines += (
                    [f"{where}: diff3-marked in {file.conflict_file}"] if file.conflict_file else []
                )
            elif file.note:
                lines.append(f"note {patch.id} {file.path}: {file.note}")
    return lines + [f"warning {warning}" for warning in lock.warnings]


def print_table(
    lock: Lock,
    console: Console,
    overlay: Path | None = None,
    image_read: dict[str, Any] | None = None,
) -> None:
    image = lock.image
    console.print(f"[bold]{image.ref}[/]  {image.digest or image.id}  source commit {image.commit}")
    table = Table(
        caption="hunks: applied/present/conflict (drift: applied where the context had changed)",
        min_width=0,
    )
    for column in _COLUMNS:
        if column == "why":
            table.add_column(column, overflow="fold", min_width=24)
        else:
            table.add_column(column, no_wrap=True)
    for patch in lock.patches:
        cells = list(_row(patch))
        style = _STYLE[patch.state]
        cells[4] = f"[{style}]{cells[4]}[/]"
        table.add_row(*cells)
    console.print(table)
    for line in _problems(lock):
        kind, _, rest = line.partition(" ")
        console.print(f"[{_PROBLEM_STYLE[kind]}]{kind}[/] {escape(rest)}", highlight=False)
    if image_read and image_read.get("layers"):
        console.print(
            f"read from {image_read['source']}: {image_read['fetched_bytes']:,} of "
            f"{image_read['image_bytes']:,} image bytes fetched"
        )
    if overlay:
        console.print(f"overlay: {overlay}  ({len(lock.files)} file(s) mounted read-only)")


def markdown(lock: Lock) -> str:
    """The plan as GitHub-flavoured Markdown: for PR bodies, issues and job summaries."""
    image = lock.image
    lines = [
        f"`{image.ref}` (`{image.digest or image.id}`), built from `{image.commit[:12]}`",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
        *("| " + " | ".join(md.text(c) for c in _row(p)) + " |" for p in lock.patches),
        "",
    ]
    problems = _problems(lock)
    if problems:
        lines += [md.fence("\n".join(problems)), ""]
    return "\n".join(lines)
