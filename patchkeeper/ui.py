"""Terminal output: progress goes to stderr so `--json` stdout stays one document."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from git.remote import RemoteProgress
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from patchkeeper.errors import redact

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


class GitFetchProgress(RemoteProgress):
    """Feeds git's fetch progress into a Rich progress bar."""

    def __init__(self, progress: Progress, label: str) -> None:
        super().__init__()
        self._progress = progress
        self._task: TaskID = progress.add_task(redact(label), total=None)

    def update(
        self,
        op_code: int,
        cur_count: str | float,
        max_count: str | float | None = None,
        message: str = "",
    ) -> None:
        self._progress.update(
            self._task, completed=float(cur_count), total=float(max_count) if max_count else None
        )


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Progress]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
    with progress:
        yield progress
