"""Identity logic against an in-memory image source (the interface, no daemon)."""

import posixpath
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.identity import REVISION_LABEL, identify
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage

SHA = "0123456789abcdef0123456789abcdef01234567"
ROOT = PurePosixPath("/sgl-workspace/sglang")
PATTERN = re.compile(r"^nightly-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$")


class DictSource:
    """An image as a dict of files, keyed as a real image keys them: normalised paths
    (an entry named with `..` could never be read from a layer, so none is kept)."""

    name = "dict"

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {PurePosixPath(posixpath.normpath(k)): v.encode() for k, v in files.items()}

    def tags(self, repository: str) -> list[str]:
        return []

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        return ResolvedImage(ref, "sha256:" + "0" * 64, None)

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        wanted = set(paths) | {p for p in self.files for g in git_dirs if p == g or g in p.parents}
        return {
            p: ImageFile(p, self.files[p], 0o644, p) if p in self.files else None for p in wanted
        }


def image(tag: str = f"nightly-20260621-{SHA[:8]}", label: str | None = None) -> ResolvedImage:
    labels = {REVISION_LABEL: label} if label else {}
    return ResolvedImage(ImageRef("r", tag), "sha256:" + "0" * 64, None, labels)


@pytest.mark.parametrize(
    "files",
    [
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            ".git/packed-refs": f"# pack\n{SHA} refs/heads/main\n",
        },
        {".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": f"{SHA}\n"},
        {".git/HEAD": f"{SHA}\n"},
        {".git": "gitdir: ../.modules/sglang\n", "../.modules/sglang/HEAD": f"{SHA}\n"},
    ],
    ids=["packed", "loose", "detached", "gitdir-file"],
)
def test_commit_is_read_from_git_metadata(files: dict[str, str]) -> None:
    source = DictSource({str(ROOT / k): v for k, v in files.items()})
    identity = identify(source, image(), ROOT, PATTERN)
    assert identity.commit == SHA
    assert identity.warnings == ()


def test_tag_and_label_disagreements_are_warnings() -> None:
    source = DictSource({str(ROOT / ".git/HEAD"): f"{SHA}\n"})
    identity = identify(source, image("nightly-20260621-deadbeef", "feedface"), ROOT, PATTERN)
    assert identity.commit == SHA
    assert any("deadbeef" in w for w in identity.warnings)
    assert any("feedface" in w and REVISION_LABEL in w for w in identity.warnings)


def test_an_image_without_the_source_root_is_a_clear_error() -> None:
    with pytest.raises(ImageError, match=r"no git metadata at /sgl-workspace/sglang/.git"):
        identify(DictSource({}), image(), ROOT, PATTERN)


def test_a_ref_that_climbs_out_is_refused() -> None:
    source = DictSource({str(ROOT / ".git/HEAD"): "ref: refs/../../../etc/passwd\n"})
    with pytest.raises(ImageError, match="suspicious"):
        identify(source, image(), ROOT, PATTERN)
