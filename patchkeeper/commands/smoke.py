"""`patchkeeper smoke`: the protocol suite against any Anthropic-compatible endpoint."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK
from patchkeeper.ui import out_console, print_document
from patchkeeper.verify import reporting
from patchkeeper.verify.smoke import SmokeOptions, run_suite


def run(options: SmokeOptions, checks: list[str], as_json: bool, junit: Path | None) -> int:
    results = run_suite(options, checks or None)
    title = f"smoke: {options.base_url}"
    if as_json:
        doc = {"base_url": options.base_url, "passed": reporting.passed(results)}
        print_document("smoke", {**doc, "checks": reporting.as_json(results)})
    else:
        reporting.print_table(results, out_console, title)
    if junit:
        reporting.write_junit(results, junit, "patchkeeper.smoke")
    reporting.append_step_summary(reporting.markdown(results, title))
    return EXIT_OK if reporting.passed(results) else EXIT_CONFLICT
