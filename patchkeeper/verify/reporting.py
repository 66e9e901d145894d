"""Smoke and verify results as a Rich table, JSON, JUnit XML and a Markdown summary."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from patchkeeper import markdown as md
from patchkeeper.errors import OutputError
from patchkeeper.ui import printable
from patchkeeper.verify.smoke import CheckResult, Status
from patchkeeper.verify.witness import Verdict

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
_STYLE = {Status.PASSED: "green", Status.FAILED: "bold red", Status.NOT_RUN: "dim"}


def passed(results: Sequence[CheckResult]) -> bool:
    return not any(r.status is Status.FAILED for r in results)


def as_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "status": r.status.value,
            "reason": r.reason,
            "seconds": round(r.seconds, 3),
        }
        for r in results
    ]


def print_table(results: Sequence[CheckResult], console: Console, title: str) -> None:
    """Reasons quote servers and titles name images: both are printed as plain text."""
    table = Table(title=printable(title))
    for column in ("check", "result", "reason", "s"):
        table.add_column(column, overflow="fold", no_wrap=column != "reason")
    for r in results:
        table.add_row(
            printable(r.name),
            f"[{_STYLE[r.status]}]{r.status}[/]",
            printable(r.reason),
            f"{r.seconds:.1f}",
        )
    console.print(table)


# What XML 1.0 forbids anywhere, even escaped: C0 controls but tab, newline and
# carriage return; surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` as XML 1.0 can hold it: each forbidden character shown as `\\xNN` or
    `\\uNNNN` (the writer escapes the rest)."""
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def write_junit(results: Sequence[CheckResult], path: Path, suite: str) -> None:
    """One testcase per check; failures carry the reason, not-run ones are skipped.
    Reasons quote the server: the file is valid XML 1.0 whatever they hold."""
    suite = xml_text(suite)
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(r.status is Status.FAILED for r in results)),
        skipped=str(sum(r.status is Status.NOT_RUN for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        name, reason = xml_text(r.name), xml_text(r.reason)
        case = ET.SubElement(root, "testcase", classname=suite, name=name, time=f"{r.seconds:.3f}")
        if r.status is Status.FAILED:
            ET.SubElement(case, "failure", message=reason).text = reason
        elif r.status is Status.NOT_RUN:
            ET.SubElement(case, "skipped", message=reason)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def markdown(results: Sequence[CheckResult], title: str) -> str:
    icon = {Status.PASSED: "pass", Status.FAILED: "**FAIL**", Status.NOT_RUN: "not run"}
    rows = "".join(f"| {icon[r.status]} | `{r.name}` | {md.text(r.reason)} |\n" for r in results)
    return f"### {md.text(title)}\n\n| | check | detail |\n|---|---|---|\n{rows}\n"


def proof_markdown(results: Sequence[CheckResult], verdicts: Sequence[Verdict], title: str) -> str:
    """The checks, then one line per witness verdict."""
    return (
        markdown(results, title) + "".join(f"- `{v.patch}`: {v.summary}\n" for v in verdicts) + "\n"
    )


def append_step_summary(text: str) -> None:
    """GitHub Actions shows what is appended to $GITHUB_STEP_SUMMARY on the run page."""
    target = os.environ.get(STEP_SUMMARY)
    if target:
        try:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as err:
            raise OutputError(f"{STEP_SUMMARY}={target}: cannot append: {err.strerror}") from None


def details(summary: str, text: str) -> str:
    """A collapsed block of preformatted text (logs) for a Markdown summary."""
    return f"<details><summary>{summary}</summary>\n\n{md.fence(text.strip())}\n</details>\n"
