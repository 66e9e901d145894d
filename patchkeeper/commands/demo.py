"""`patchkeeper demo`: build the offline scenario, then run the main job on it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from patchkeeper.commands import sync
from patchkeeper.commands._common import SourceOptions
from patchkeeper.demo.setup import lay_out
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import SourceKind
from patchkeeper.ui import err_console


def run(workdir: Path) -> int:
    workdir = workdir.resolve()
    with err_console.status("building the demo upstream repository and nightly image"):
        demo = lay_out(workdir, EngineSource().client)
    err_console.print(
        f"demo recipe: {demo.recipe}\n"
        f"$ {command_hint()} sync --recipe {demo.recipe} --image-source engine",
        markup=False,
        highlight=False,
    )
    source = SourceOptions(SourceKind.ENGINE)  # the demo nightly exists only in the engine
    return sync.run(demo.recipe, None, workdir / "overlays", False, source)


def command_hint() -> str:
    """How to run patchkeeper from the user's shell: `patchkeeper` when that is this one
    on PATH, else this installation's script by its path (a venv not activated)."""
    script = Path(sys.executable).parent / "patchkeeper"
    on_path = shutil.which("patchkeeper")
    if on_path and (not script.exists() or os.path.samefile(on_path, script)):
        return "patchkeeper"
    if script.exists():
        relative = os.path.relpath(script)
        return relative if not relative.startswith("..") else str(script)
    return f"{sys.executable} -m patchkeeper"
