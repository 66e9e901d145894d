"""Identity logic against an in-memory image source (the interface, no daemon)."""

import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.identity import REVISION_LABEL, identify
from tests.image.memory import PATTERN, ROOT, SHA, DictSource, image


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
