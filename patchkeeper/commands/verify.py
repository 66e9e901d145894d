"""`patchkeeper verify`: prove an overlay, and each patch's witness, against the protocol."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError
from patchkeeper.overlay import drift
from patchkeeper.overlay.lock import read_lock
from patchkeeper.ui import err_console, out_console, print_document, printable, rule
from patchkeeper.verify import reporting
from patchkeeper.verify.tiers import Outcome, Runtime, Settings, verify
from patchkeeper.verify.witness import unproven


def runtime_named(name: str) -> Runtime:
    try:
        return Runtime(name)
    except ValueError:
        raise ConfigError(f"--runtime {name!r}: choose auto, image or host") from None


def run(
    overlay: Path,
    tier: str,
    runtime: str,
    settings: Settings,
    as_json: bool,
    junit: Path | None,
    allow_unproven: bool = False,
) -> int:
    """Exit 0 only when every check passed and every witness proved its patch (or shows
    it already in the image); `allow_unproven` lets witnesses that prove nothing pass."""
    lock = read_lock(overlay)
    chosen = runtime_named(runtime)
    if chosen is not Runtime.HOST:  # the image itself will run: it must be the lock's
        drift.guard_local(lock, pull=chosen is Runtime.IMAGE)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-verify-") as scratch:
        outcome = verify(lock, overlay, tier, chosen, settings, Path(scratch))
    weak = [v.patch for v in unproven(outcome.verdicts)]
    ok = reporting.passed(outcome.checks) and (allow_unproven or not weak)
    if as_json:
        doc = {
            "overlay": str(overlay),
            "image": lock.image.ref,
            "tier": tier,
            "runtime": outcome.runtime.value,
            "run_id": outcome.run_id,
            "sglang": outcome.sglang or None,
            "passed": ok,
            "unproven": weak,
            "checks": reporting.as_json(outcome.checks),
            "vanilla": reporting.as_json(outcome.vanilla),
            "patches": [asdict(v) for v in outcome.verdicts],
            "logs": outcome.logs,
        }
        print_document("verify", doc)
    else:
        _print(outcome)
        if weak and not allow_unproven:
            err_console.print(
                f"not proven: {printable(', '.join(weak))} (--allow-unproven accepts that)"
            )
    if junit:
        reporting.write_junit(outcome.checks, junit, f"patchkeeper.verify.{tier}")
    summary = reporting.proof_markdown(outcome.checks, outcome.verdicts, outcome.title)
    if outcome.logs:
        summary += reporting.details("server logs", outcome.logs) + "\n"
    reporting.append_step_summary(summary)
    return EXIT_OK if ok else EXIT_CONFLICT


def _print(outcome: Outcome) -> None:
    reporting.print_table(outcome.checks, out_console, outcome.title)
    if outcome.verdicts:
        table = Table(title="witnesses")
        for column in ("patch", "witness", "vanilla", "overlay", "verdict"):
            table.add_column(column)
        for v in outcome.verdicts:
            row = (v.patch, v.witness or "-", v.vanilla, v.overlay, v.summary)
            table.add_row(*(printable(cell) for cell in row))
        out_console.print(table)
    if outcome.logs:
        rule(err_console, "server logs")
        err_console.print(printable(outcome.logs), highlight=False)
