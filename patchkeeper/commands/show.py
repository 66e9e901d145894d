"""`patchkeeper show PATCH`: the diff one patch would put on one image, as ported.

Not the upstream diff: the image's own bytes against what the overlay would mount,
for the files this patch changes, so a reviewer sees what the nightly really gets
(hunks already present are absent here; context is the image's). Writes nothing.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError
from patchkeeper.patching.port import PatchOutcome, PatchState
from patchkeeper.ui import err_console


def _names(outcome: PatchOutcome) -> set[str]:
    change = outcome.change
    names = {change.id, change.patch.key}
    if change.patch.pr is not None:
        names |= {str(change.patch.pr), f"#{change.patch.pr}", f"pr-{change.patch.pr}"}
    return names


def find(outcomes: list[PatchOutcome], wanted: str) -> PatchOutcome:
    matches = [o for o in outcomes if wanted in _names(o)]
    if len(matches) != 1:
        known = ", ".join(o.change.id for o in outcomes)
        how = "no patch" if not matches else "more than one patch"
        raise ConfigError(f"{wanted!r} names {how} of this recipe (patches: {known})")
    return matches[0]


def _text(data: bytes | None) -> list[str]:
    return [] if data is None else data.decode("utf-8", errors="replace").splitlines(True)


def run(recipe: Path, wanted: str, image: str | None, source: SourceOptions) -> int:
    plan = make_plan(recipe, image, False, source)
    outcome = find(plan.result.outcomes, wanted)
    others = {
        path: o.change.id
        for o in plan.result.outcomes
        if o is not outcome
        for path in (f.path for f in o.files)
    }
    err_console.print(
        f"{outcome.change.id}: {outcome.state} on {plan.image.ref}", markup=False, highlight=False
    )
    for file in outcome.files:
        before = plan.result.vanilla.get(file.path)
        after = plan.result.current.get(file.path)
        if file.path in others:
            err_console.print(
                f"note: {file.path} is also changed by {others[file.path]}; shown together",
                markup=False,
            )
        sys.stdout.writelines(
            difflib.unified_diff(
                _text(before),
                _text(after),
                f"a{file.path}" if before is not None else "/dev/null",
                f"b{file.path}" if after is not None else "/dev/null",
            )
        )
    sys.stdout.flush()
    return EXIT_CONFLICT if outcome.state is PatchState.CONFLICT else EXIT_OK
