"""`patchkeeper resolve`: record hand-resolved conflict files beside their patchsets.

Reads the index `sync --conflicts DIR` wrote (shape checked: see
`patching.conflicts`); every listed file must be readable UTF-8 text free of
conflict markers, or nothing is recorded (exit 2 naming the files).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from patchkeeper.commands._common import writable_dir
from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Patchset
from patchkeeper.errors import EXIT_OK, ConfigError, OutputError
from patchkeeper.patching.conflicts import INDEX, ConflictEntry, inside, read_index
from patchkeeper.patching.resolutions import Resolution, has_markers, record, sha256, store
from patchkeeper.ui import out_console, print_document


def _read(conflicts: Path, name: str, what: str) -> bytes:
    path = inside(conflicts, name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{conflicts / name}: the {what} is gone; run sync again") from None
    except OSError as err:
        raise ConfigError(f"{conflicts / name}: cannot read: {err.strerror or err}") from None


def _pending(
    conflicts: Path, entry: ConflictEntry, patchsets: dict[str, Patchset], recipe: Path
) -> tuple[Patchset, bytes, bytes]:
    """(patchset, ours, resolved) for one index entry, every claim checked."""
    patchset = patchsets.get(entry.patchset)
    if patchset is None:
        raise ConfigError(f"{conflicts / INDEX}: patchset {entry.patchset!r} is not in {recipe}")
    if entry.patch_key not in {p.key for p in patchset.patches}:
        raise ConfigError(
            f"{conflicts / INDEX}: patch {entry.patch_key!r} is not in {patchset.path}"
        )
    resolved = _read(conflicts, entry.file, "marked file")
    ours = _read(conflicts, entry.ours, "copy of the image's file")
    if sha256(ours) != entry.ours_sha256:
        raise ConfigError(f"{conflicts}: {entry.ours} was changed; run sync again")
    try:
        resolved.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{conflicts / entry.file}: not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    return patchset, ours, resolved


def run(recipe_path: Path, conflicts: Path, as_json: bool) -> int:
    patchsets = {p.name: p for p in load_patchsets(load_recipe(recipe_path))}
    index = read_index(conflicts)
    if not index.files:
        raise ConfigError(
            f"{conflicts / INDEX}: lists no marked file, nothing to record (a local diff matched "
            "exactly has no three-way text: update the diff file against the image's file)"
        )
    pending = [(e, *_pending(conflicts, e, patchsets, recipe_path)) for e in index.files]
    unresolved = [e.file for e, _, _, resolved in pending if has_markers(resolved)]
    if unresolved:
        raise ConfigError(
            f"{conflicts}: still holding conflict markers: {', '.join(unresolved)}; "
            "nothing was recorded"
        )
    for patchset in {id(p): p for _, p, _, _ in pending}.values():  # before recording any
        writable_dir(store(patchset.path), "resolutions store")
    recorded: list[dict[str, str]] = []
    for entry, patchset, ours, resolved in pending:
        resolution = Resolution(PurePosixPath(entry.path), ours, entry.diff_sha256, resolved)
        try:
            where = record(patchset.path, entry.patch_key, resolution)
        except OSError as err:
            raise OutputError(
                f"{err.filename or patchset.path}: cannot record the resolution of "
                f"{entry.file} ({err.strerror or err}); recorded so far: "
                f"{', '.join(r['path'] for r in recorded) or 'none'}"
            ) from None
        recorded.append({"patch": entry.patch, "path": entry.path, "stored": str(where)})
    if as_json:
        print_document("resolve", {"recorded": recorded})
    else:
        for item in recorded:
            out_console.print(f"recorded {item['patch']} {item['path']} -> {item['stored']}")
    return EXIT_OK
