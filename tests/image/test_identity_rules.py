"""How an image's commit is read from its `.git`: every rule, through `identify`.

Uses the in-memory source of test_identity.py (the ImageSource interface, no daemon)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.identity import REVISION_LABEL, identify
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage
from tests.image.test_identity import PATTERN, ROOT, SHA, DictSource, image

OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def source(files: dict[str, str]) -> DictSource:
    return DictSource({str(ROOT / k): v for k, v in files.items()})


def commit(files: dict[str, str]) -> str:
    return identify(source(files), image(), ROOT, PATTERN).commit


def test_symbolic_refs_are_followed_through_a_chain() -> None:
    files = {
        ".git/HEAD": "ref: refs/heads/current\n",
        ".git/refs/heads/current": "ref: refs/heads/release\n",
        ".git/refs/heads/release": "ref: refs/heads/main\n",
        ".git/refs/heads/main": f"{SHA}\n",
    }
    assert commit(files) == SHA


def test_a_ref_chain_that_never_ends_is_an_error_not_a_hang() -> None:
    files = {
        ".git/HEAD": "ref: refs/heads/a\n",
        ".git/refs/heads/a": "ref: refs/heads/b\n",
        ".git/refs/heads/b": "ref: refs/heads/a\n",
    }
    with pytest.raises(ImageError, match="cannot resolve HEAD"):
        commit(files)


def test_a_loose_ref_wins_over_the_packed_one() -> None:
    files = {
        ".git/HEAD": "ref: refs/heads/main\n",
        ".git/refs/heads/main": f"{SHA}\n",
        ".git/packed-refs": f"{OTHER} refs/heads/main\n",
    }
    assert commit(files) == SHA


def test_packed_refs_skip_comments_peeled_lines_and_other_refs() -> None:
    packed = (
        "# pack-refs with: peeled fully-peeled sorted\n"
        f"{OTHER} refs/heads/mainline\n"
        f"{OTHER} refs/tags/v1\n"
        f"^{OTHER}\n"
        f"{SHA} refs/heads/main\n"
    )
    files = {".git/HEAD": "ref: refs/heads/main\n", ".git/packed-refs": packed}
    assert commit(files) == SHA


@pytest.mark.parametrize(
    "head",
    ["ref: refs/heads/missing\n", "not a ref at all\n", f"{SHA[:20]}\n", f"{SHA.upper()}\n", ""],
)
def test_a_head_that_names_no_commit_is_an_error_quoting_it(head: str) -> None:
    with pytest.raises(ImageError, match=r"cannot resolve HEAD in /sgl-workspace/sglang/\.git"):
        commit({".git/HEAD": head, ".git/packed-refs": f"{SHA} refs/heads/main\n"})


@pytest.mark.parametrize("ref", ["heads/main", "refs/heads/../../../../etc/passwd", "/etc/passwd"])
def test_refs_outside_refs_are_refused(ref: str) -> None:
    with pytest.raises(ImageError, match=f"suspicious HEAD ref {ref!r}"):
        commit({".git/HEAD": f"ref: {ref}\n"})


def test_a_gitdir_file_may_point_at_an_absolute_path_inside_the_image() -> None:
    files = {
        str(ROOT / ".git"): "gitdir: /sgl-workspace/.git/modules/sglang\n",
        "/sgl-workspace/.git/modules/sglang/HEAD": f"{SHA}\n",
    }
    found = identify(DictSource(files), image(), ROOT, PATTERN)
    assert found.commit == SHA


def test_a_dot_git_file_that_is_not_a_gitdir_pointer_is_no_git_metadata() -> None:
    with pytest.raises(ImageError, match="no git metadata at"):
        commit({".git": "something else\n"})


def test_the_tag_and_label_agreeing_give_no_warning() -> None:
    src = source({".git/HEAD": f"{SHA}\n"})
    assert identify(src, image(label=SHA), ROOT, PATTERN).warnings == ()
    assert identify(src, image(label=SHA[:7]), ROOT, PATTERN).warnings == ()


def test_each_disagreement_is_one_precise_warning() -> None:
    src = source({".git/HEAD": f"{SHA}\n"})
    tagged = identify(src, image("nightly-20260621-deadbeef"), ROOT, PATTERN)
    assert tagged.warnings == (
        f"tag nightly-20260621-deadbeef names deadbeef, but the image's source is at {SHA}",
    )
    labelled = identify(src, image(label=OTHER), ROOT, PATTERN)
    assert labelled.warnings == (
        f"label {REVISION_LABEL}={OTHER} disagrees with source commit {SHA}",
    )


def test_without_a_pattern_or_a_matching_tag_the_tag_is_not_checked() -> None:
    src = source({".git/HEAD": f"{SHA}\n"})
    assert identify(src, image("nightly-20260621-deadbeef"), ROOT, None).warnings == ()
    assert identify(src, image("latest"), ROOT, PATTERN).warnings == ()
    found = identify(src, image(), ROOT, PATTERN)
    assert (found.source_root, found.image.ref.tag) == (ROOT, f"nightly-20260621-{SHA[:8]}")


class PerImageSource:
    """Bytes per (image id, path): reading one image never answers for another."""

    name = "per-image"

    def __init__(self, files: dict[tuple[str, str], bytes]) -> None:
        self.files = files

    def tags(self, repository: str) -> list[str]:
        return []

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        raise AssertionError("identify never resolves")

    def read(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, ImageFile | None]:
        found = {}
        for path in paths:
            data = self.files.get((image.image_id, str(path)))
            found[path] = None if data is None else ImageFile(path, data, 0o644, path)
        return found


def resolved(image_id: str, tag: str | None = None) -> ResolvedImage:
    return ResolvedImage(ImageRef("r", tag), image_id, None)


def test_the_gitdir_pointer_is_everything_after_its_first_colon() -> None:
    files = {
        ".git": "gitdir:../modules/a:b\n",  # no space; a colon in the path
        "../modules/a:b/HEAD": f"{SHA}\n",
    }
    assert commit(files) == SHA


def test_a_gitdir_without_head_quotes_the_empty_head() -> None:
    with pytest.raises(ImageError, match=r"cannot resolve HEAD in .*modules/x \(got ''\)"):
        commit({".git": "gitdir: ../modules/x\n"})


def test_a_ref_missing_everywhere_quotes_what_it_got() -> None:
    with pytest.raises(ImageError, match=r"\(got ''\)"):
        commit({".git/HEAD": "ref: refs/heads/missing\n"})


@pytest.mark.parametrize(("links", "resolves"), [(4, True), (5, False)])
def test_symbolic_refs_chain_at_most_as_deep_as_git_allows(links: int, resolves: bool) -> None:
    # git's own limit (SYMREF_MAXDEPTH) is 5 symbolic refs, HEAD included.
    files = {".git/HEAD": "ref: refs/heads/r0\n"}
    for i in range(links - 1):
        files[f".git/refs/heads/r{i}"] = f"ref: refs/heads/r{i + 1}\n"
    files[f".git/refs/heads/r{links - 1}"] = f"{SHA}\n"
    if resolves:
        assert commit(files) == SHA
    else:
        with pytest.raises(ImageError, match="cannot resolve HEAD"):
            commit(files)


def test_a_long_unreadable_head_is_quoted_to_80_characters() -> None:
    head = "z" * 200
    with pytest.raises(ImageError) as err:
        commit({".git/HEAD": head})
    assert str(err.value).endswith(f"(got {'z' * 80!r})")
