"""Witnesses: the check that must fail without a patch and pass with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patchkeeper.overlay.lock import LockedPatch
from patchkeeper.verify.smoke import CheckResult, Status


@dataclass(frozen=True)
class Verdict:
    patch: str
    witness: str | None
    vanilla: str
    overlay: str
    proven: bool
    retirable: bool

    @property
    def summary(self) -> str:
        if self.witness is None:
            return "no witness"
        if self.retirable:
            return f"retirable: {self.witness} already passes on vanilla"
        return "proven" if self.proven else f"NOT proven ({self.witness} {self.overlay})"


def judge(
    patches: Sequence[LockedPatch],
    vanilla: Sequence[CheckResult],
    overlay: Sequence[CheckResult],
) -> list[Verdict]:
    before = {r.name: r.status for r in vanilla}
    after = {r.name: r.status for r in overlay}
    verdicts = []
    for patch in patches:
        name = patch.witness
        was = before.get(name or "", Status.NOT_RUN)
        now = after.get(name or "", Status.NOT_RUN)
        verdicts.append(
            Verdict(
                patch.id,
                name,
                was.value,
                now.value,
                proven=name is not None and was is Status.FAILED and now is Status.PASSED,
                retirable=name is not None and was is Status.PASSED,
            )
        )
    return verdicts


def unproven(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Patches whose witness neither proved them nor shows them already upstream: a
    witness not run (or passing only overlaid with vanilla not failing) proves nothing."""
    return [v for v in verdicts if v.witness is not None and not v.proven and not v.retirable]
