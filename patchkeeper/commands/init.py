"""`patchkeeper init --from-compose FILE --service NAME`: a recipe and patchset from the
compose service someone already runs with hand-patched files mounted over the image.

The service is read as Compose itself reads it (`docker compose config`: `${VAR}` and
`.env` interpolated, `extends:` merged, relative bind sources made absolute), after
a bound on its YAML aliases. Each bind mount of a file under the source root is a
patch candidate, diffed against the image's own (vanilla) file; a candidate named by
`--pr` (its in-container path or its repository path) becomes that upstream PR, the
others local diffs next to the patchset, each checked to port onto the image it was
made from. Every candidate's in-container path is recorded as `service.adopted`, so
`up` neutralises the user's mount there every night. The published port and the
`--chat-template` (with the mount that provides it) are recorded too. Nothing is
written if any target exists.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from patchkeeper.config.load import NAME
from patchkeeper.config.yaml_bounds import check_expansion
from patchkeeper.errors import EXIT_OK, ConfigError, ImageError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageFile, ImageRef, ImageSource
from patchkeeper.image.registry import RegistrySource
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.compose import dump, flag
from patchkeeper.patching.diff import parse_diff
from patchkeeper.patching.hunks import HunkStatus, apply_exact, split_lines
from patchkeeper.ui import err_console, out_console, print_document

SGLANG_TAGS = r"^nightly-dev-cu13-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$"
HALF_PORT = "a one-file local diff may be half of an upstream fix: name its PR with --pr"


@dataclass(frozen=True)
class Candidate:
    """A host file mounted over a file of the image's source tree."""

    host: Path
    target: PurePosixPath
    relative: PurePosixPath  # to the source root: the path in upstream's repository


@dataclass
class Report:
    """What `init` says: on the terminal line by line, or as one JSON document."""

    as_json: bool
    warnings: list[str]

    def say(self, text: str) -> None:
        if not self.as_json:
            out_console.print(text, soft_wrap=True, markup=False, highlight=False)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        err_console.print(f"warning: {text}", soft_wrap=True, markup=False, highlight=False)


def binds(spec: dict[str, Any], base: Path) -> list[tuple[Path, PurePosixPath]]:
    """(host source, target) of each bind mount in Compose's model of a service; a
    relative source (v1 leaves long-syntax ones so) is taken from `base`, as v2 does."""
    found = []
    for volume in spec.get("volumes") or []:
        if isinstance(volume, str):  # v1 prints short syntax, sources absolute
            parts = volume.split(":")
            if len(parts) < 2 or not parts[0].startswith("/"):
                continue
            source, target = parts[0], parts[1]
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            continue
        found.append((base / Path(source).expanduser(), PurePosixPath(target)))
    return found


def candidates(spec: dict[str, Any], base: Path, root: PurePosixPath) -> list[Candidate]:
    return [
        Candidate(host, target, target.relative_to(root))
        for host, target in binds(spec, base)
        if target.is_relative_to(root) and host.is_file()
    ]


def _command(file: Path, spec: dict[str, Any], service: str) -> list[str]:
    command = spec.get("command")
    if not command:
        raise ConfigError(f"{file}: services.{service}.command: none; it must start the server")
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _port(spec: dict[str, Any], command: list[str]) -> int | None:
    """The port a client on the host reaches: published from `ports:`, else `--port`."""
    inside = flag(command, "--port")
    published: list[tuple[str, int]] = []
    if spec.get("network_mode") != "host":
        for entry in spec.get("ports") or []:
            if isinstance(entry, dict):
                target, host = str(entry.get("target")), str(entry.get("published") or "")
            else:  # v1: "HOST:CONTAINER[/proto]" or "IP:HOST:CONTAINER"
                parts = str(entry).split("/")[0].split(":")
                target, host = parts[-1], (parts[-2] if len(parts) > 1 else "")
            if host.isdigit():
                published.append((target, int(host)))
    matching = [port for target, port in published if target == inside]
    if matching or published:
        return (matching or [port for _, port in published])[0]
    return int(inside) if inside and inside.isdigit() else None


def _template(spec: dict[str, Any], base: Path, command: list[str], report: Report) -> Path | None:
    """The host file behind `--chat-template`: mounted at its path, or in a mounted dir."""
    given = flag(command, "--chat-template")
    if given is None:
        return None
    path = PurePosixPath(given)
    for host, target in binds(spec, base):
        if path == target and host.is_file():
            return host
        if path.is_relative_to(target) and (host / path.relative_to(target)).is_file():
            return host / path.relative_to(target)
    report.warn(
        f"--chat-template {given}: no mount provides it; the overlay carries no template "
        "(set service.chat_template in the recipe)"
    )
    return None


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


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what}: not UTF-8 text (byte {err.start}: {err.reason}); "
            "a hand patch must be text to be diffed"
        ) from None


def _unified(old: list[str], new: list[str], before: str, after: str, context: int) -> str:
    lines = difflib.unified_diff(old, new, before, after, n=context)
    marker = "\n\\ No newline at end of file\n"
    return "".join(line if line.endswith("\n") else line + marker for line in lines)


def make_diff(vanilla: str | None, patched: str, relative: PurePosixPath) -> str:
    """A diff from `vanilla` to `patched` that ports back onto `vanilla` exactly: the
    context is widened until no hunk's block is ambiguous (an append after lines that
    recur in the file, say)."""
    old = split_lines(vanilla) if vanilla is not None else []
    new = split_lines(patched)
    before = f"a/{relative}" if vanilla is not None else "/dev/null"
    context = 3
    while True:
        text = _unified(old, new, before, f"b/{relative}", context)
        if not text or vanilla is None:
            return text
        (file,) = parse_diff(text, str(relative))
        result, outcomes = apply_exact(old, file.hunks)
        if result == new and all(o.status is HunkStatus.APPLIED for o in outcomes):
            return text
        if context > len(old):
            reasons = "; ".join(o.reason for o in outcomes if o.reason)
            raise ConfigError(
                f"{relative}: the hand patch does not port back onto the image's own file even "
                f"with the whole file as context ({reasons}); write its diff by hand"
            )
        context *= 2


def diff_names(found: list[Candidate], name: str) -> dict[PurePosixPath, str]:
    """`<name>-<stem>.diff` per candidate, with as many parent directories as it takes
    to tell same-named files apart (two `__init__.py`)."""
    names: dict[PurePosixPath, str] = {}
    for candidate in found:
        parts = candidate.relative.with_suffix("").parts
        for depth in range(1, len(parts) + 1):
            label = "-".join(parts[-depth:])
            others = [
                c
                for c in found
                if c != candidate and c.relative.with_suffix("").parts[-depth:] == parts[-depth:]
            ]
            if not others:
                break
        names[candidate.target] = f"{name}-{label}.diff"
    return names


def _pr_targets(
    prs: dict[str, int], found: list[Candidate], root: PurePosixPath
) -> dict[PurePosixPath, int]:
    """`--pr PATH=N` by the in-container path the file mounts, or by its repository path."""
    chosen: dict[PurePosixPath, int] = {}
    for given, number in prs.items():
        match = [c for c in found if given in (str(c.target), str(c.relative))]
        if not match:
            listed = "; ".join(f"{c.target} (repository path {c.relative})" for c in found)
            raise ConfigError(
                f"--pr {given}={number}: no file is mounted there; give the in-container "
                f"path or the path under {root}. Mounted files: {listed or 'none'}"
            )
        chosen[match[0].target] = number
    return chosen


def _service(file: Path, service: str) -> dict[str, Any]:
    check_expansion(file)
    model = compose_cli.find().config([file])
    services = model.get("services") or {}
    spec = services.get(service)
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: no service {service!r}; it has {sorted(services)}")
    if not spec.get("image"):
        raise ConfigError(f"{file}: services.{service}.image: none (a build-only service)")
    return spec


def _image(file: Path, spec: dict[str, Any], service: str) -> ImageRef:
    image = str(spec["image"])
    try:
        return ImageRef.parse(image)
    except ConfigError as err:
        raise ConfigError(
            f"{file}: services.{service}.image: {image!r} as Compose interpolates it "
            f"(from the environment and {file.parent / '.env'}): {err}"
        ) from None


@dataclass
class _Adopted:
    """What each mounted file became: a patch entry, its diff file, or nothing."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    diffs: dict[Path, str] = field(default_factory=dict)  # local diff files to write
    dropped: list[str] = field(default_factory=list)  # the image's own bytes: no patch


def _adopt(
    file: Path,
    ref: ImageRef,
    found: Sequence[Candidate],
    vanilla: Mapping[PurePosixPath, ImageFile | None],
    pr_of: Mapping[PurePosixPath, int],
    diff_paths: Mapping[PurePosixPath, Path],
    report: Report,
) -> _Adopted:
    """Each mounted file diffed against the image's own: a PR entry where `--pr` named
    one, else a local diff (with the half-a-fix warning); identical files are dropped."""
    adopted = _Adopted()
    for candidate in found:
        file_in_image = vanilla.get(candidate.target)
        where = f"{candidate.host} (mounted at {candidate.target})"
        original = (
            _text(file_in_image.content, f"{ref}:{candidate.target}") if file_in_image else None
        )
        text = make_diff(original, _text(candidate.host.read_bytes(), where), candidate.relative)
        if not text:
            report.say(f"{candidate.target}: the image's own bytes; not a patch")
            adopted.dropped.append(str(candidate.target))
            continue
        body = text.splitlines()
        added = sum(1 for line in body if line[:1] == "+" and line[:3] != "+++")
        removed = sum(1 for line in body if line[:1] == "-" and line[:3] != "---")
        report.say(
            f"{candidate.target}: {candidate.host} differs from {ref}'s (+{added} -{removed})"
        )
        report.say(text)
        why = f"hand-patched {candidate.relative} mounted by {file.name}"
        pr = pr_of.get(candidate.target)
        if pr is not None:
            adopted.patches.append({"pr": pr, "why": why})
            continue
        report.warn(f"{candidate.target}: kept as a local diff; {HALF_PORT}")
        diff_path = diff_paths[candidate.target]
        adopted.diffs[diff_path] = text
        adopted.patches.append({"diff": diff_path.name, "why": why})
    return adopted


def run(
    file: Path,
    service: str,
    source_root: PurePosixPath,
    upstream: dict[str, str],
    prs: dict[str, int],
    directory: Path,
    name: str,
    as_json: bool = False,
) -> int:
    if not NAME.match(name):
        raise ConfigError(
            f"--name {name!r}: the recipe's file name is its name; "
            "use letters, digits, '.', '_' and '-' only"
        )
    report = Report(as_json, [])
    spec = _service(file, service)
    ref = _image(file, spec, service)
    command = _command(file, spec, service)
    model_path = flag(command, "--model-path")
    if model_path is None:
        raise ConfigError(f"{file}: services.{service}.command: no --model-path")
    found = candidates(spec, file.parent.resolve(), source_root)
    pr_of = _pr_targets(prs, found, source_root)
    port = _port(spec, command)
    template = _template(spec, file.parent.resolve(), command, report)
    recipe_path, patchset_path = directory / f"{name}.yaml", directory / f"{name}-patches.yaml"
    names = diff_names(found, name)
    outputs = [recipe_path, patchset_path, *(directory / n for n in names.values())]
    clash = [str(p) for p in outputs if p.exists()]
    if clash:
        raise ConfigError(f"refusing to overwrite {clash}; choose another --name or directory")

    source = _source(ref)
    image = source.resolve(ref)
    vanilla = source.read(image, [c.target for c in found])
    diff_paths = {target: directory / n for target, n in names.items()}
    adopted = _adopt(file, ref, found, vanilla, pr_of, diff_paths, report)
    patches, diffs = adopted.patches, adopted.diffs
    if not patches:
        raise ConfigError(f"{file}: service {service!r} mounts no file that differs from the image")
    patchset = {"upstream": upstream, "source_root": str(source_root), "patches": patches}
    fields: dict[str, Any] = {
        "name": service,
        "compose_file": os.path.relpath(file.resolve(), directory.resolve()),
        "model": {"path": model_path},
    }
    if port is not None:
        fields["port"] = port
    if template is not None:
        fields["chat_template"] = os.path.relpath(template, directory.resolve())
    fields["adopted"] = [str(c.target) for c in found]
    recipe = {
        "image": ref.repository,
        "tags": _tags_pattern(ref.tag),
        "patchsets": [patchset_path.name],
        "service": fields,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in diffs.items():
        path.write_text(text, encoding="utf-8")
    patchset_path.write_text(dump(patchset), encoding="utf-8")
    recipe_path.write_text(dump(recipe), encoding="utf-8")
    if as_json:
        print_document(
            "init",
            {
                "recipe": str(recipe_path),
                "patchset": str(patchset_path),
                "diffs": [str(p) for p in diffs],
                "patches": patches,
                "not_patches": adopted.dropped,
                "adopted": fields["adopted"],
                "port": port,
                "chat_template": str(template) if template else None,
                "warnings": report.warnings,
            },
        )
        return EXIT_OK
    report.say(f"wrote {recipe_path} and {patchset_path} ({len(patches)} patch(es))")
    report.say(f"next: patchkeeper up --recipe {recipe_path}")
    return EXIT_OK
