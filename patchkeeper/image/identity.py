"""Which upstream commit an image was built from, read from its own `.git`.

The tag's short SHA and the OCI revision label are only cross-checks: SGLang
once shipped a nightly whose label disagreed with its source tree.

The git metadata comes whole from one read (`git_dirs` of `ImageSource.read`), so
the commit is decided after the fact from whatever the checkout holds: a loose ref,
packed-refs only, a detached HEAD. Submodule and worktree checkouts (`.git` is a
`gitdir:` file, relative paths resolved inside the image) cost one more read of
the directory it names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from patchkeeper.errors import ImageError
from patchkeeper.image.model import ImageFile, ImageSource, ResolvedImage, printable
from patchkeeper.image.paths import follow_link

REVISION_LABEL = "org.opencontainers.image.revision"
_SHA = re.compile(r"^[0-9a-f]{40}$")

Files = Mapping[PurePosixPath, ImageFile | None]


@dataclass(frozen=True)
class ImageIdentity:
    image: ResolvedImage
    source_root: PurePosixPath
    commit: str
    warnings: tuple[str, ...] = ()


def git_dir_of(root: PurePosixPath) -> PurePosixPath:
    """Where a checkout at `root` keeps its git dir, or the `gitdir:` file naming it."""
    return root / ".git"


class _GitView:
    """Git metadata of one image: from a prior read where it has it, else read now."""

    def __init__(
        self, source: ImageSource, image: ResolvedImage, files: Files | None, root: PurePosixPath
    ) -> None:
        self.source, self.image = source, image
        self.files: dict[PurePosixPath, ImageFile | None] = dict(files or {})
        self.read_dirs = {git_dir_of(root)} if files is not None else set()

    def text(self, git_dir: PurePosixPath, path: PurePosixPath) -> str | None:
        if git_dir not in self.read_dirs:
            self.files.update(self.source.read(self.image, [], [git_dir]))
            self.read_dirs.add(git_dir)
        file = self.files.get(path)
        return None if file is None else file.content.decode("utf-8", "replace")


def _pointed(base: PurePosixPath, text: str) -> PurePosixPath:
    """A path a git file names (`gitdir:`, `commondir`), resolved inside the image."""
    return follow_link(base / "x", text.strip())


def read_commit(
    source: ImageSource, image: ResolvedImage, root: PurePosixPath, files: Files | None = None
) -> str:
    """The commit HEAD names; `files` may hold a prior read with `git_dirs=[root/.git]`."""
    view = _GitView(source, image, files, root)
    git_dir = git_dir_of(root)
    head = view.text(git_dir, git_dir / "HEAD")
    if head is None:
        pointer = view.text(git_dir, git_dir)
        if not pointer or not pointer.startswith("gitdir:"):
            raise ImageError(
                f"image {image.ref}: no git metadata at {git_dir} (is source_root right?)"
            )
        git_dir = _pointed(root, pointer.split(":", 1)[1])
        head = view.text(git_dir, git_dir / "HEAD")
    common = git_dir
    commondir = view.text(git_dir, git_dir / "commondir")
    if commondir:
        common = _pointed(git_dir, commondir)
    head = (head or "").strip()
    for _ in range(5):  # symbolic refs may chain
        if _SHA.match(head):
            return head
        if not head.startswith("ref:"):
            break
        ref = head.split(":", 1)[1].strip()
        if ".." in PurePosixPath(ref).parts or not ref.startswith("refs/"):
            raise ImageError(f"image {image.ref}: suspicious HEAD ref {printable(ref)!r}")
        loose = view.text(common, common / ref)
        packed = None if loose else view.text(common, common / "packed-refs")
        head = loose.strip() if loose else _packed_ref(packed, ref)
    raise ImageError(
        f"image {image.ref}: cannot resolve HEAD in {git_dir} (got {printable(head[:80])!r})"
    )


def _packed_ref(packed: str | None, ref: str) -> str:
    for line in (packed or "").splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha
    return ""


def identify(
    source: ImageSource,
    image: ResolvedImage,
    source_root: PurePosixPath,
    tag_pattern: re.Pattern[str] | None = None,
    files: Files | None = None,
) -> ImageIdentity:
    commit = read_commit(source, image, source_root, files)
    warnings = []
    tag = image.ref.tag
    match = tag_pattern.match(tag) if tag_pattern and tag else None
    if match and not commit.startswith(match["sha"]):
        warnings.append(f"tag {tag} names {match['sha']}, but the image's source is at {commit}")
    label = image.labels.get(REVISION_LABEL)
    if label and not (commit.startswith(label) or label.startswith(commit)):
        label = printable(label)
        warnings.append(f"label {REVISION_LABEL}={label} disagrees with source commit {commit}")
    return ImageIdentity(image, source_root, commit, tuple(warnings))
