"""`patchkeeper init --from-compose FILE --service NAME`: a recipe and patchset from the
compose service someone already runs with hand-patched files mounted over the image.

Each bind mount of a file under the source root is a patch candidate: it is diffed
against the image's own (vanilla) file, read from the image named by the service,
and the diff shown. A candidate given `--pr PATH=N` becomes that upstream PR;
the others are kept as local diffs next to the patchset. A mount equal to the
image's file is reported and dropped. Nothing is written if any target exists.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.config.load import read_yaml
from patchkeeper.errors import EXIT_OK, ConfigError, ImageError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef, ImageSource
from patchkeeper.image.registry import RegistrySource
from patchkeeper.overlay.compose import dump, flag
from patchkeeper.overlay.service import user_command
from patchkeeper.ui import out_console

SGLANG_TAGS = r"^nightly-dev-cu13-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$"


def _say(text: str) -> None:
    out_console.print(text, soft_wrap=True, markup=False, highlight=False)


@dataclass(frozen=True)
class Candidate:
    """A host file mounted over a file of the image's source tree."""

    host: Path
    target: PurePosixPath
    relative: PurePosixPath  # to the source root: the path in upstream's repository


def _binds(file: Path, spec: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    found = []
    for volume in spec.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
        elif isinstance(volume, dict) and volume.get("type", "bind") == "bind":
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            continue
        if source.startswith((".", "/", "~")):
            host = (file.parent / Path(source).expanduser()).resolve()
            found.append((host, PurePosixPath(target)))
    return found


def candidates(file: Path, spec: dict[str, Any], root: PurePosixPath) -> list[Candidate]:
    return [
        Candidate(host, target, target.relative_to(root))
        for host, target in _binds(file, spec)
        if target.is_relative_to(root) and host.is_file()
    ]


def _source(ref: ImageRef) -> ImageSource:
    try:
        engine = EngineSource()
        engine.resolve(ref)
        return engine
    except (UnreachableError, ImageError):
        return RegistrySource()


def _tags_pattern(tag: str | None) -> str:
    if tag and re.fullmatch(SGLANG_TAGS, tag):
        return SGLANG_TAGS
    raise ConfigError(
        f"image tag {tag!r} is not shaped like SGLang's nightlies (nightly-dev-cu13-DATE-SHA8); "
        "write the recipe's `tags:` by hand"
    )


def _diff(vanilla: bytes | None, patched: bytes, relative: PurePosixPath) -> str:
    old = vanilla.decode("utf-8").splitlines(keepends=True) if vanilla is not None else []
    new = patched.decode("utf-8").splitlines(keepends=True)
    before = f"a/{relative}" if vanilla is not None else "/dev/null"
    return "".join(difflib.unified_diff(old, new, before, f"b/{relative}"))


def run(
    file: Path,
    service: str,
    source_root: PurePosixPath,
    upstream: dict[str, str],
    prs: dict[str, int],
    directory: Path,
    name: str,
) -> int:
    document = read_yaml(file) or {}
    spec = (document.get("services") or {}).get(service)
    if not isinstance(spec, dict) or not spec.get("image"):
        raise ConfigError(f"{file}: no service {service!r} with an image")
    ref = ImageRef.parse(str(spec["image"]))
    model_path = flag(user_command(file, spec, service), "--model-path")
    if model_path is None:
        raise ConfigError(f"{file}: service {service!r}: its command has no --model-path")
    found = candidates(file, spec, source_root)
    unknown = sorted(set(prs) - {str(c.relative) for c in found})
    if unknown:
        raise ConfigError(f"--pr {unknown}: no mounted file at that path under {source_root}")
    recipe_path, patchset_path = directory / f"{name}.yaml", directory / f"{name}-patches.yaml"
    diff_paths = [directory / f"{name}-{c.host.stem}.diff" for c in found]
    outputs = [recipe_path, patchset_path, *diff_paths]
    clash = [str(p) for p in outputs if p.exists()]
    if clash:
        raise ConfigError(f"refusing to overwrite {clash}; choose another --name or directory")

    source = _source(ref)
    image = source.resolve(ref)
    vanilla = source.read(image, [c.target for c in found])
    patches: list[dict[str, Any]] = []
    diffs: dict[Path, str] = {}
    for candidate in found:
        file_in_image = vanilla.get(candidate.target)
        original = file_in_image.content if file_in_image else None
        text = _diff(original, candidate.host.read_bytes(), candidate.relative)
        if not text:
            _say(f"{candidate.target}: the image's own bytes; not a patch")
            continue
        added = sum(1 for line in text.splitlines() if line[:1] == "+" and line[:3] != "+++")
        removed = sum(1 for line in text.splitlines() if line[:1] == "-" and line[:3] != "---")
        _say(f"{candidate.target}: {candidate.host} differs from {ref}'s (+{added} -{removed})")
        _say(text)
        why = f"hand-patched {candidate.relative} mounted by {file.name}"
        pr = prs.get(str(candidate.relative))
        if pr is not None:
            patches.append({"pr": pr, "why": why})
            continue
        diff_path = directory / f"{name}-{candidate.host.stem}.diff"
        diffs[diff_path] = text
        patches.append({"diff": diff_path.name, "why": why})
    if not patches:
        raise ConfigError(f"{file}: service {service!r} mounts no file that differs from the image")
    patchset = {"upstream": upstream, "source_root": str(source_root), "patches": patches}
    recipe = {
        "image": ref.repository,
        "tags": _tags_pattern(ref.tag),
        "patchsets": [patchset_path.name],
        "service": {
            "name": service,
            "compose_file": os.path.relpath(file.resolve(), directory.resolve()),
            "model": {"path": model_path},
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in diffs.items():
        path.write_text(text, encoding="utf-8")
    patchset_path.write_text(dump(patchset), encoding="utf-8")
    recipe_path.write_text(dump(recipe), encoding="utf-8")
    _say(f"wrote {recipe_path} and {patchset_path} ({len(patches)} patch(es))")
    _say(f"next: patchkeeper up --recipe {recipe_path}")
    return EXIT_OK
