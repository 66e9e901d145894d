"""`patchkeeper demo`: build the offline scenario, then run the main job on it."""

from __future__ import annotations

from pathlib import Path

from patchkeeper.commands import sync
from patchkeeper.commands._common import SourceKind, SourceOptions
from patchkeeper.demo.setup import lay_out
from patchkeeper.image.engine import EngineSource
from patchkeeper.ui import err_console


def run(workdir: Path) -> int:
    workdir = workdir.resolve()
    with err_console.status("building the demo upstream repository and nightly image"):
        demo = lay_out(workdir, EngineSource().client)
    command = f"patchkeeper sync --recipe {demo.recipe} --image-source engine"
    err_console.print(f"demo recipe: {demo.recipe}\n$ {command}")
    source = SourceOptions(SourceKind.ENGINE)  # the demo nightly exists only in the engine
    return sync.run(demo.recipe, None, workdir / "overlays", False, source)
