"""`patchkeeper resolve`: record hand-resolved conflict files beside their patchsets.

Reads the index `sync --conflicts DIR` wrote; every listed file must be free of
conflict markers, or nothing is recorded (exit 2 naming the files).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.errors import EXIT_OK, ConfigError
from patchkeeper.patching.resolutions import INDEX, Resolution, has_markers, record, sha256
from patchkeeper.report import print_json
from patchkeeper.ui import out_console


def _inside(directory: Path, name: str) -> Path:
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise ConfigError(f"{directory / INDEX}: {name!r} points outside {directory}")
    return path


def run(recipe_path: Path, conflicts: Path, as_json: bool) -> int:
    patchsets = {p.name: p for p in load_patchsets(load_recipe(recipe_path))}
    try:
        entries = json.loads((conflicts / INDEX).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{conflicts}: no readable {INDEX} from `sync --conflicts`: {err}"
        ) from None
    pending = []
    for entry in entries:
        patchset = patchsets.get(entry["patchset"])
        if patchset is None:
            raise ConfigError(
                f"{conflicts}: patchset {entry['patchset']!r} is not in {recipe_path}"
            )
        resolved = _inside(conflicts, entry["file"]).read_bytes()
        ours = _inside(conflicts, entry["ours"]).read_bytes()
        if sha256(ours) != entry["ours_sha256"]:
            raise ConfigError(f"{conflicts}: {entry['ours']} was changed; run sync again")
        pending.append((patchset, entry, ours, resolved))
    unresolved = [e["file"] for _, e, _, text in pending if has_markers(text.decode("utf-8"))]
    if unresolved:
        raise ConfigError(
            f"{conflicts}: still holding conflict markers: {', '.join(unresolved)}; "
            "nothing was recorded"
        )
    recorded = []
    for patchset, entry, ours, resolved in pending:
        resolution = Resolution(PurePosixPath(entry["path"]), ours, entry["diff_sha256"], resolved)
        where = record(patchset.path, entry["patch_key"], resolution)
        recorded.append({"patch": entry["patch"], "path": entry["path"], "stored": str(where)})
    if as_json:
        print_json({"recorded": recorded}, out_console)
    else:
        for item in recorded:
            out_console.print(f"recorded {item['patch']} {item['path']} -> {item['stored']}")
    return EXIT_OK
