"""Terminal output and logging.

Progress and logs go to stderr so `--json` stdout stays one document. Output that
is not a terminal (a CI log, a pipe, a file) is never clipped or wrapped to a
guessed width: tables are as wide as their content. Every log line passes through
`redact`, so a secret cannot reach a log even when a message quotes a URL or an
API's error text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from patchkeeper.errors import redact

if TYPE_CHECKING:
    from rich.progress import Progress

# Wide enough for any table; only things that expand to the width (rules, centred
# text) use it all, and patchkeeper prints none of those when not on a terminal.
PIPE_WIDTH = 100_000


class PipeSafeConsole(Console):
    """A Rich console whose width is unbounded when it does not write to a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


err_console = PipeSafeConsole(stderr=True, highlight=False)
out_console = PipeSafeConsole(highlight=False)

log = logging.getLogger("patchkeeper")


class RedactingFormatter(logging.Formatter):
    """Formats records (tracebacks included), then removes anything secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """-q: errors only; default: warnings; -v: what is fetched from where; -vv: debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, verbosity), logging.DEBUG
    )
    handler = _StderrHandler()
    handler.setFormatter(RedactingFormatter("patchkeeper: %(levelname)s %(name)s: %(message)s"))
    for old in [h for h in log.handlers if isinstance(h.formatter, RedactingFormatter)]:
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


# Every C0 and C1 control character but newline: a terminal obeys them (ESC starts a
# sequence that retitles the window, clears the screen, moves the cursor...); and lone
# surrogates, which no UTF-8 stream can carry.
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def plain(text: str) -> str:
    """Untrusted text (a server's reply, its logs, a name read from a file) for a
    terminal: control characters shown as Python writes them (`\\x1b`, `\\t`), so it
    prints as the text it is and cannot steer the terminal."""
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def printable(text: str) -> str:
    """`plain` text for a Rich console: its markup escaped too, so it cannot style."""
    return escape(plain(text))


def rule(console: Console, title: str) -> None:
    """A section heading: Rich's rule on a terminal, a plain line elsewhere."""
    if console.is_terminal:
        console.rule(title)
    else:
        console.print(f"--- {title} ---", markup=False, highlight=False)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Progress]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        console=err_console,
        transient=True,
        disable=not enabled or not err_console.is_terminal,
    )
    with progress:
        yield progress


# Every `--json` document names its kind and the version of its shape, so that a
# consumer can refuse a shape it does not know (the lock carries its own `format`).
SCHEMA_VERSION = 1


def versioned(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with `"schema": "patchkeeper.<kind>/<version>"` first."""
    return {"schema": f"patchkeeper.{kind}/{SCHEMA_VERSION}", **body}


def print_document(kind: str, body: dict[str, Any]) -> None:
    """One versioned JSON document on stdout, byte-exact (no wrapping, no colour)."""
    sys.stdout.write(json.dumps(versioned(kind, body), indent=2) + "\n")
    sys.stdout.flush()
