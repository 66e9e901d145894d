"""Which upstream commit an image was built from, read from its own `.git`.

The tag's short SHA and the OCI revision label are only cross-checks: SGLang
once shipped a nightly whose label disagreed with its source tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from patchkeeper.config.models import TagRegex
from patchkeeper.errors import ImageError
from patchkeeper.image.model import ImageSource, ResolvedImage

REVISION_LABEL = "org.opencontainers.image.revision"
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ImageIdentity:
    image: ResolvedImage
    source_root: PurePosixPath
    commit: str
    warnings: tuple[str, ...] = ()


def git_metadata_paths(root: PurePosixPath, branch: str) -> list[PurePosixPath]:
    """The files `read_commit` usually needs, so a caller can fetch them in one pass."""
    dot_git = root / ".git"
    return [dot_git / "HEAD", dot_git / "packed-refs", dot_git / "refs/heads" / branch]


def _text(source: ImageSource, image: ResolvedImage, path: PurePosixPath) -> str | None:
    file = source.read(image, [path])[path]
    return None if file is None else file.content.decode("utf-8", "replace")


def _git_dir(source: ImageSource, image: ResolvedImage, root: PurePosixPath) -> PurePosixPath:
    """`<root>/.git`, or where a `.git` file (worktree, submodule) points inside the image."""
    dot_git = root / ".git"
    if _text(source, image, dot_git / "HEAD") is not None:
        return dot_git
    pointer = _text(source, image, dot_git)
    if pointer and pointer.startswith("gitdir:"):
        target = pointer.split(":", 1)[1].strip()
        return root / target if not target.startswith("/") else PurePosixPath(target)
    raise ImageError(f"image {image.ref}: no git metadata at {dot_git} (is source_root right?)")


def read_commit(source: ImageSource, image: ResolvedImage, root: PurePosixPath) -> str:
    git_dir = _git_dir(source, image, root)
    head = (_text(source, image, git_dir / "HEAD") or "").strip()
    for _ in range(5):  # symbolic refs may chain
        if _SHA.match(head):
            return head
        if not head.startswith("ref:"):
            break
        ref = head.split(":", 1)[1].strip()
        if ".." in PurePosixPath(ref).parts or not ref.startswith("refs/"):
            raise ImageError(f"image {image.ref}: suspicious HEAD ref {ref!r}")
        loose = _text(source, image, git_dir / ref)
        head = loose.strip() if loose else _packed_ref(source, image, git_dir, ref)
    raise ImageError(f"image {image.ref}: cannot resolve HEAD in {git_dir} (got {head[:80]!r})")


def _packed_ref(source: ImageSource, image: ResolvedImage, git_dir: PurePosixPath, ref: str) -> str:
    packed = _text(source, image, git_dir / "packed-refs") or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha
    return ""


def identify(
    source: ImageSource,
    image: ResolvedImage,
    source_root: PurePosixPath,
    tag_pattern: TagRegex | None = None,
) -> ImageIdentity:
    commit = read_commit(source, image, source_root)
    warnings = []
    tag = image.ref.tag
    match = tag_pattern.match(tag) if tag_pattern and tag else None
    if match and not commit.startswith(match["sha"]):
        warnings.append(f"tag {tag} names {match['sha']}, but the image's source is at {commit}")
    label = image.labels.get(REVISION_LABEL)
    if label and not (commit.startswith(label) or label.startswith(commit)):
        warnings.append(f"label {REVISION_LABEL}={label} disagrees with source commit {commit}")
    return ImageIdentity(image, source_root, commit, tuple(warnings))
