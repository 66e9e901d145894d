"""git's fetch progress as a Rich progress bar (kept apart from `ui`, which starts fast)."""

from __future__ import annotations

from git.remote import RemoteProgress
from rich.progress import Progress, TaskID

from patchkeeper.errors import redact


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
