"""`patchkeeper prune`: retire patches upstream made unnecessary.

Two kinds of evidence: every tracked nightly contains the PR's merge (ancestry), or
the patch's witness check already passes on the vanilla image (a `verify --json`
report), which catches fixes that landed under another PR.
"""

from __future__ import annotations

import json
from pathlib import Path

from patchkeeper.commands._common import SourceOptions
from patchkeeper.commands.timeline import compute
from patchkeeper.config.edit import retire
from patchkeeper.config.models import Patchset
from patchkeeper.errors import EXIT_OK, ConfigError
from patchkeeper.timeline import Timeline
from patchkeeper.ui import out_console, print_document


def _by_ancestry(timeline: Timeline, keys: set[str]) -> dict[str, str]:
    if not timeline.tags:
        return {}
    oldest, newest = timeline.tags[0].tag, timeline.tags[-1].tag
    return {
        row.change.patch.key: (
            f"in every tracked nightly ({len(timeline.tags)} tags, {oldest} .. {newest}); "
            f"first in {row.first(timeline.tags)}"
        )
        for row in timeline.rows
        if row.change.patch.key in keys
        and row.contained
        and all(cell is True for cell in row.contained)
    }


def by_witness(report: Path, patchset: Patchset) -> dict[str, str]:
    """Patches of `patchset` that a `verify --json` report marks retirable."""
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{report}: cannot read the verify report: {err}") from None
    verdicts = doc.get("patches") if isinstance(doc, dict) else None
    if not isinstance(verdicts, list):
        raise ConfigError(f"{report}: no 'patches' list; write it with `verify --json`")
    where = doc.get("image") or doc.get("overlay") or "the vanilla image"
    prefix = f"{patchset.name}/"
    found = {}
    for verdict in verdicts:
        name = verdict.get("patch") if isinstance(verdict, dict) else None
        if not isinstance(name, str):
            raise ConfigError(f"{report}: a verdict without a 'patch' name: {verdict!r}")
        if verdict.get("retirable") is True and name.startswith(prefix):
            found[name.removeprefix(prefix)] = (
                f"witness {verdict.get('witness')} already passes on vanilla {where}"
            )
    return found


def run(
    recipe: Path,
    count: int,
    tags_from: Path | None,
    source: SourceOptions,
    write: bool,
    witness_report: Path | None = None,
    as_json: bool = False,
) -> int:
    window = compute(recipe, count, tags_from, False, source)
    timeline = window.timeline
    found = len(timeline.tags)
    by_ancestry = found >= count
    warnings = []
    if not by_ancestry:
        shortfall = (
            f"asked to retire on {count} nightlies, found {found} in {window.where}: "
            "retiring nothing by ancestry"
        )
        if witness_report is None:
            raise ConfigError(f"{shortfall} (list more tags with --tags-from, or lower --tags)")
        warnings.append(shortfall)
        if not as_json:
            out_console.print(f"[yellow]warning[/] {shortfall}")
    retired: list[dict[str, str]] = []
    updated: list[str] = []
    for patchset in window.patchsets:
        keys = {p.key for p in patchset.patches}
        reasons = by_witness(witness_report, patchset) if witness_report else {}
        if by_ancestry:
            reasons.update(_by_ancestry(timeline, keys))  # ancestry is the stronger evidence
        reasons = {k: v for k, v in reasons.items() if k in keys}
        order = [p.key for p in patchset.patches]
        retirements = sorted(reasons.items(), key=lambda item: order.index(item[0]))
        for key, reason in retirements:
            retired.append({"patchset": patchset.name, "patch": key, "reason": reason})
            if not as_json:
                out_console.print(f"retire {key} ({patchset.name}): {reason}")
        if retirements and write:
            retire(patchset.path, retirements)
            updated.append(str(patchset.path))
            if not as_json:
                out_console.print(f"updated {patchset.path}")
    if as_json:
        body = {"tags": found, "retire": retired, "written": updated, "warnings": warnings}
        print_document("prune", body)
    elif not retired:
        out_console.print("every patch is still needed by some tracked nightly")
    elif not write:
        out_console.print("dry run: pass --write to edit the patchsets")
    return EXIT_OK
