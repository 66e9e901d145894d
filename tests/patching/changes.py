"""Local-diff changes for the porting tests: one file's one-line change, parsed."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from patchkeeper.config.models import Patch
from patchkeeper.patching.port import ParsedChange
from patchkeeper.upstream.model import PrState, UpstreamChange

ROOT = PurePosixPath("/src")


def change(key: str, diff: str, exclude: tuple[str, ...] = ()) -> ParsedChange:
    patch = Patch(diff=Path(f"{key}.diff"), why="test", exclude=exclude)
    return ParsedChange.of(UpstreamChange("ps", patch, PrState.LOCAL, diff), ROOT)


def modify(path: str, old: str, new: str, context: str = "ctx\n") -> str:
    return (
        f"--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n"
        + "".join(f" {c}\n" for c in context.splitlines())
        + f"-{old}\n+{new}\n"
    )
