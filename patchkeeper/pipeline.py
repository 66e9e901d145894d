"""The sync pipeline, end to end, with I/O passed in at the edges.

config -> upstream resolution -> image identity -> containment -> vanilla
extraction -> hunk application -> lock. Writing the overlay is the caller's
last step, and only when nothing conflicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from patchkeeper import __version__
from patchkeeper.chat_template import CONTAINER_PATH as TEMPLATE_PATH
from patchkeeper.chat_template import render as render_template
from patchkeeper.config.models import Patchset, Recipe
from patchkeeper.errors import UnsafeInputError, redact
from patchkeeper.image.identity import ImageIdentity, git_dir_of, identify
from patchkeeper.image.model import ImageFile, ImageRef, ImageSource, ResolvedImage
from patchkeeper.image.tags import newest_tag
from patchkeeper.overlay import lock as L
from patchkeeper.patching import resolutions
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import (
    ParsedChange,
    PatchOutcome,
    PatchState,
    PortResult,
    mount_dirs,
    port,
    refuse_unmountable,
    sha256,
)
from patchkeeper.upstream.mirror import split_credentials
from patchkeeper.upstream.model import PrState, UpstreamResolver

ResolverFactory = Callable[[Patchset], UpstreamResolver]


@dataclass(frozen=True)
class Plan:
    """Everything sync knows before it writes: the lock and the bytes behind it."""

    recipe: Recipe
    image: ResolvedImage
    result: PortResult
    modes: dict[PurePosixPath, int]
    template: str | None
    lock: L.Lock
    image_read: dict[str, Any]

    @property
    def conflicts(self) -> list[PatchOutcome]:
        return self.result.conflicts

    @property
    def overlay_name(self) -> str:
        return self.image.ref.tag or self.image.image_id.replace(":", "-")[:19]

    def overlay_files(self) -> dict[PurePosixPath, tuple[bytes, int]]:
        return {p: (data, self.modes[p]) for p, data in self.result.changed_files().items()}

    def vanilla_files(self) -> dict[PurePosixPath, bytes]:
        """The image's bytes of every overlaid file it has: what a host-side check runs as
        "vanilla", so witnesses are judged against this image and not a release."""
        vanilla = self.result.vanilla
        return {p: data for p in self.result.changed_files() if (data := vanilla.get(p))}


def choose_image(recipe: Recipe, source: ImageSource, image: str | None) -> ImageRef:
    """`--image` as given, or the newest tag of the recipe's repository."""
    if image:
        ref = ImageRef.parse(image)
        if ref.tag or ref.digest:
            return ref
        repository = ref.repository
    else:
        repository = recipe.image
    newest = newest_tag(
        source.tags(repository),
        recipe.tag_pattern(),
        repository,
        lambda tag: source.resolve(ImageRef(repository, tag)).created,
    )
    return ImageRef(repository, newest.tag)


def _vanilla(
    files: dict[PurePosixPath, ImageFile | None], paths: Sequence[PurePosixPath]
) -> tuple[dict[PurePosixPath, bytes | None], dict[PurePosixPath, int]]:
    files = {p: files[p] for p in paths}
    for path, file in files.items():
        if file is not None and file.via_symlink:
            raise UnsafeInputError(
                f"image path {path} is a symlink to {file.resolved}; refusing to patch through it"
            )
    contents = {p: (f.content if f else None) for p, f in files.items()}
    modes = {p: f.mode for p, f in files.items() if f}
    return contents, modes


def with_bases(
    resolver: UpstreamResolver, changes: Sequence[ParsedChange], warnings: list[str]
) -> list[ParsedChange]:
    """`changes` (of one patchset) with what their files merge three-way against: a PR's
    files at its base commit; a local diff's, file by file, the upstream blobs its `index`
    lines name (one batch for all), where upstream has them. Why a blob upstream has cannot
    serve (an ambiguous id, a damaged mirror) goes to `warnings`."""
    named = sorted({key for c in changes for key in c.named_bases()})
    blobs = resolver.blobs(named) if named else {}
    done = []
    for change in changes:
        if change.change.state is PrState.LOCAL:
            found = {}
            for path, blob in change.named_bases():
                if (content := blobs[(path, blob)].content) is not None:
                    found[path] = content
                elif problem := blobs[(path, blob)].problem:
                    warnings.append(f"{change.label}: {path}: {problem}")
            done.append(change.with_bases(found))
        elif change.change.base:
            bases = resolver.files_at(change.change.base, change.base_paths())
            done.append(change.with_bases(bases))
        else:
            done.append(change)
    return done


@dataclass(frozen=True)
class _Upstream:
    """One patchset's changes as upstream knows them, parsed, with the resolver that
    answers the later questions about them (containment, bases)."""

    patchset: Patchset
    resolver: UpstreamResolver
    changes: list[ParsedChange]


def plan(
    recipe: Recipe,
    patchsets: Sequence[Patchset],
    source: ImageSource,
    ref: ImageRef,
    resolver_for: ResolverFactory,
    notices: Sequence[str] = (),
) -> Plan:
    """The module's chain, one stage per call: what upstream says of each patch, one
    read of the image, which commit it is and which changes it contains, what the
    others merge against, porting onto its files, and the lock."""
    image = source.resolve(ref)
    upstreams = [_upstream(patchset, resolver_for(patchset)) for patchset in patchsets]
    files = _read_image(source, image, upstreams)
    warnings: list[str] = list(notices)
    identities: list[ImageIdentity] = []
    parsed: list[ParsedChange] = []
    upstream_ids: set[str] = set()
    for upstream in upstreams:
        patchset, resolver = upstream.patchset, upstream.resolver
        identity = identify(source, image, patchset.source_root, recipe.tag_pattern(), files)
        identities.append(identity)
        warnings += identity.warnings
        warnings += [note for c in upstream.changes for note in c.change.notes()]
        upstream_ids |= _contained(upstream, identity.commit, warnings)
        ported = [c for c in upstream.changes if c.change.id not in upstream_ids]
        merged = {c.change.id: c for c in with_bases(resolver, ported, warnings)}
        parsed += [merged.get(c.change.id, c) for c in upstream.changes]
    result, modes = _port(source, image, files, parsed, upstream_ids)
    _name_supersessions(result, parsed, upstreams, identities)
    template = render_template(recipe.service, recipe.path)
    lock = build_lock(
        recipe, patchsets, image, source.name, identities, result, template, modes, warnings
    )
    return Plan(recipe, image, result, modes, template, lock, source.accounting())


def _upstream(patchset: Patchset, resolver: UpstreamResolver) -> _Upstream:
    """Each patch resolved upstream (one batch), parsed, with its recorded resolutions."""
    resolver.prepare(patchset.patches)
    changes = [resolver.resolve(patchset.name, p) for p in patchset.patches]
    parsed = [
        ParsedChange.of(c, patchset.source_root).with_resolutions(
            resolutions.load(patchset.path, c.patch.key) if patchset.path.is_file() else ()
        )
        for c in changes
    ]
    return _Upstream(patchset, resolver, parsed)


def _read_image(
    source: ImageSource, image: ResolvedImage, upstreams: Sequence[_Upstream]
) -> dict[PurePosixPath, ImageFile | None]:
    """One pass over the image for everything sync may ask: each checkout's git metadata
    and every file any patch touches; which commit it is is decided after."""
    touched = {p for u in upstreams for change in u.changes for p in change.paths_to_read()}
    git_dirs = sorted({git_dir_of(u.patchset.source_root) for u in upstreams})
    return source.read(image, sorted(touched), git_dirs)


def _contained(upstream: _Upstream, commit: str, warnings: list[str]) -> set[str]:
    """The ids of the patchset's landed changes that image commit `commit` contains (a
    revert it also contains puts the change back to porting, with a warning)."""
    landed = [
        c.change
        for c in upstream.changes
        if c.change.state in (PrState.MERGED, PrState.REVERTED) and c.change.merge_commit
    ]
    if not landed:
        return set()
    if not upstream.resolver.has_commit(commit):
        warnings.append(
            f"{upstream.patchset.name}: image commit {commit} is not in "
            f"{redact(upstream.patchset.upstream.clone_url)}; deciding by content alone"
        )
        return set()
    marks = [m for c in landed for m in (c.merge_commit, c.reverted_by) if m]
    inside = upstream.resolver.contained(marks, [commit])[commit]
    contained = set()
    for change in landed:
        if change.merge_commit not in inside:
            continue
        if change.reverted_by in inside:
            warnings.append(
                f"{change.id}: landed in {change.merge_commit} but "
                f"{change.reverted_by} reverted it, and this image has the revert: "
                "porting it again"
            )
        else:
            contained.add(change.id)
    return contained


def _port(
    source: ImageSource,
    image: ResolvedImage,
    files: dict[PurePosixPath, ImageFile | None],
    parsed: Sequence[ParsedChange],
    upstream_ids: set[str],
) -> tuple[PortResult, dict[PurePosixPath, int]]:
    """Every change ported onto the image's files (those already in it only checked),
    and the mode each changed file gets."""
    needed = set().union(*(p.paths_to_read() for p in parsed))  # all read above, in one pass
    vanilla, modes = _vanilla(files, sorted(needed))
    ported = [p for p in parsed if p.change.id not in upstream_ids]
    if dirs := mount_dirs(ported, vanilla):  # only where a patch creates a file
        refuse_unmountable(ported, vanilla, source.kinds(image, sorted(dirs)))
    result = port(parsed, vanilla, upstream_ids)
    for path in result.changed_files():
        modes.setdefault(path, 0o644)
    return result, modes


def _name_supersessions(
    result: PortResult,
    parsed: Sequence[ParsedChange],
    upstreams: Sequence[_Upstream],
    identities: Sequence[ImageIdentity],
) -> None:
    """In the image by ancestry but not by content: a later commit changed the PR's lines
    (superseded, e.g. a validator a later PR removed). Say which commit, on the outcome."""
    resolver_of = {
        c.change.id: (upstream.resolver, identity.commit)
        for upstream, identity in zip(upstreams, identities, strict=True)
        for c in upstream.changes
    }
    by_id = {p.change.id: p for p in parsed}
    for index, outcome in enumerate(result.outcomes):
        if outcome.via != "ancestry":
            continue
        change = by_id[outcome.change.id]
        try:
            still = port([change], result.vanilla).outcomes[0].state
        except UnsafeInputError:
            continue  # an entry no overlay carries (binary, deletion): no content to compare
        if still is PatchState.UPSTREAM:
            continue  # every hunk still there
        resolver, commit = resolver_of[change.change.id]
        changer = resolver.changed_by(change.change, commit)
        via = f"ancestry, since changed by {changer}" if changer else "ancestry, since changed"
        result.outcomes[index] = replace(outcome, via=via)


def _patch_entry(outcome: PatchOutcome) -> L.LockedPatch:
    change, patch = outcome.change, outcome.change.patch
    return L.LockedPatch(
        id=change.id,
        patchset=change.patchset,
        pr=patch.pr,
        diff_file=patch.diff.name if patch.diff else None,
        state=outcome.state,
        via=outcome.via,
        pr_state=change.state,
        title=change.title,
        why=patch.why,
        witness=patch.witness,
        head=change.head,
        merge_commit=change.merge_commit,
        base=change.base,
        diff_sha256=change.diff_sha256,
        hunks=L.Hunks(
            applied=outcome.count(HunkStatus.APPLIED, HunkStatus.DRIFTED),
            drift=outcome.count(HunkStatus.DRIFTED),
            present=outcome.count(HunkStatus.PRESENT),
            conflict=outcome.count(HunkStatus.CONFLICT),
        ),
        files=[
            L.LockedPatchFile(
                path=str(f.path),
                kind=f.kind,
                action=f.action,
                note=f.note,
                hunks=[
                    L.LockedHunk(
                        header=h.hunk.header, status=h.status, line=h.line, reason=h.reason
                    )
                    for h in f.hunks
                ],
            )
            for f in outcome.files
        ],
    )


def build_lock(
    recipe: Recipe,
    patchsets: Sequence[Patchset],
    image: ResolvedImage,
    source: str,
    identities: Sequence[ImageIdentity],
    result: PortResult,
    template: str | None,
    modes: dict[PurePosixPath, int],
    warnings: Sequence[str],
) -> L.Lock:
    files = [
        L.LockedFile(
            path=str(path),
            vanilla_sha256=sha256(result.vanilla.get(path)),
            patched_sha256=sha256(data) or "",
            mode=modes[path],
        )
        for path, data in result.changed_files().items()
    ]
    body = dict(
        generated_by=f"patchkeeper {__version__}",
        recipe=recipe.name,
        service=recipe.service.name,
        fingerprint="",
        image=L.LockedImage(
            ref=str(image.ref),
            digest=image.digest,
            id=image.image_id,
            pinned=image.pinned,
            commit=identities[0].commit,
            source=source,
        ),
        patchsets=[
            L.LockedPatchset(
                name=ps.name,
                upstream=redact(split_credentials(ps.upstream.clone_url)[0]),  # no userinfo
                branch=ps.upstream.branch,
                source_root=str(ps.source_root),
                commit=identity.commit,
            )
            for ps, identity in zip(patchsets, identities, strict=True)
        ],
        patches=[_patch_entry(o) for o in result.outcomes],
        files=files,
        chat_template=L.LockedTemplate(
            container_path=TEMPLATE_PATH, sha256=hashlib.sha256(template.encode()).hexdigest()
        )
        if template is not None
        else None,
        warnings=[],
    )
    # The fingerprint is the written overlay's (overlay.write.fingerprint): it covers
    # the compose files and template too, which are rendered after the plan.
    return L.Lock.model_validate(body).model_copy(update={"warnings": list(warnings)})
