"""Image references, resolved images, and the one interface every image source implements."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from patchkeeper.errors import ConfigError
from patchkeeper.image.digests import is_sha256

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# The distribution reference grammar: [host[:port]/]component(/component)*.
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Untrusted image text (labels, names) with control characters, terminal escapes
    among them, shown as `\\xNN` so printing it can never drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class ImageRef:
    """`repository[:tag][@sha256:...]`, parsed without guessing a registry."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Each part checked whole (they become URL paths and names): a clear ConfigError
        for anything else."""
        rest, at, digest = text.partition("@")
        repository, tag = rest, None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            repository, tag = rest.rsplit(":", 1)
        if not _REPOSITORY.fullmatch(repository) or (tag is not None and not _TAG.fullmatch(tag)):
            raise ConfigError(f"image reference {text!r}: bad repository or tag")
        if at and not is_sha256(digest):
            raise ConfigError(f"image reference {text!r}: digest must be sha256:<64 hex>")
        return cls(repository, tag, digest or None)

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{digest}"


@dataclass(frozen=True)
class ResolvedImage:
    """An image pinned down: `digest` is the manifest digest when one is known.

    `image_id` (the config digest) identifies the content whatever the source.
    `provenance` says where what is read from it can be trusted as coming from (the
    engine, or a registry and the verified manifest digest); read results are cached
    only under it, and never when it is None (an image layout on disk).
    Labels and `created` are printable (control characters escaped).
    """

    ref: ImageRef
    image_id: str
    digest: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None
    provenance: str | None = None

    @property
    def pinned(self) -> str:
        """A reference that can never move: repo@digest, else the image id."""
        return f"{self.ref.repository}@{self.digest}" if self.digest else self.image_id


@dataclass(frozen=True)
class ImageFile:
    """A regular file read from an image (after following symlinks inside it)."""

    path: PurePosixPath
    content: bytes
    mode: int
    resolved: PurePosixPath

    @property
    def via_symlink(self) -> bool:
        return self.resolved != self.path


PathKind = Literal["file", "dir", "symlink", "other", "absent"]
"""What a path is in an image, as `lstat` inside it would say (`kinds`)."""


class ImageSource(Protocol):
    """Engine, registry and layout sources all answer these questions."""

    name: str

    def tags(self, repository: str) -> list[str]: ...

    def resolve(self, ref: ImageRef) -> ResolvedImage: ...

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        """Read regular files; None for a path the image does not have.

        For each of `git_dirs`, the result also holds every small metadata file it has
        (HEAD, refs/..., packed-refs, shallow, commondir, gitdir), or the git dir itself
        when it is a `gitdir:` file; a metadata file not in the result is absent.
        """
        ...

    def kinds(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, PathKind]:
        """What each path is, not following a symlink at the path itself (symlinks in its
        parents are followed, inside the image): "file", "dir", "symlink", "other" (a
        device or FIFO) or "absent" (also below a regular file). `read` cannot say this:
        it refuses directories and follows symlinks, and a missing path below a symlinked
        directory reads as None like any other missing path.
        """
        ...

    def accounting(self) -> dict[str, Any]:
        """What reading cost: source name, bytes fetched (per layer where there are layers)."""
        ...


class SourceKind(StrEnum):
    """Where images are read from (`--image-source`): `auto` prefers the local engine."""

    AUTO = "auto"
    ENGINE = "engine"
    REGISTRY = "registry"
    LAYOUT = "layout"
