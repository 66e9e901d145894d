"""How an image's commit is read from its `.git`: every rule, through `identify`.

Uses the in-memory source of tests/image/memory.py (the ImageSource interface, no daemon)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.identity import REVISION_LABEL, identify, read_commit
from patchkeeper.image.model import ImageFile, ImageRef, ResolvedImage
from tests.image.memory import PATTERN, ROOT, SHA, DictSource, image

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
    """Bytes per (image id, path): reading one image never answers for another. Each
    read is recorded, as (image id, git dirs), since every read of a registry image
    can mean fetching layers."""

    name = "per-image"

    def __init__(self, files: dict[tuple[str, str], bytes]) -> None:
        self.files = {
            (image_id, PurePosixPath(path)): data for (image_id, path), data in files.items()
        }
        self.reads: list[tuple[str, tuple[str, ...]]] = []

    def tags(self, repository: str) -> list[str]:
        return []

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        raise AssertionError("identify never resolves")

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        self.reads.append((image.image_id, tuple(str(g) for g in git_dirs)))
        held = {
            path: data
            for (image_id, path), data in self.files.items()
            if image_id == image.image_id
        }
        wanted = set(paths) | {p for p in held for g in git_dirs if g == p or g in p.parents}
        return {p: ImageFile(p, held[p], 0o644, p) if p in held else None for p in wanted}


def resolved(image_id: str, tag: str | None = None) -> ResolvedImage:
    return ResolvedImage(ImageRef("r", tag), image_id, None)


A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
GIT = str(ROOT / ".git")


def test_each_image_is_read_for_its_own_commit() -> None:
    head, packed = str(ROOT / ".git/HEAD"), str(ROOT / ".git/packed-refs")
    module = "/sgl-workspace/modules/sglang"
    files = {
        (A, head): b"ref: refs/heads/main\n",
        (A, packed): f"{SHA} refs/heads/main\n".encode(),
        (B, GIT): b"gitdir: ../modules/sglang\n",
        (B, module + "/HEAD"): f"{OTHER}\n".encode(),
        (B, packed): f"{SHA} refs/heads/main\n".encode(),
    }
    source = PerImageSource(files)
    assert identify(source, resolved(A), ROOT, None).commit == SHA
    assert identify(source, resolved(B), ROOT, None).commit == OTHER
    # one read per git dir: the checkout's, then the one its `gitdir:` file names
    assert source.reads == [(A, (GIT,)), (B, (GIT,)), (B, (module,))]


def test_a_prior_read_of_the_git_dir_is_used_instead_of_reading_again() -> None:
    files = {
        (A, str(ROOT / ".git/HEAD")): b"ref: refs/heads/main\n",
        (A, str(ROOT / ".git/refs/heads/main")): f"{SHA}\n".encode(),
    }
    source = PerImageSource(files)
    prior = source.read(resolved(A), [], [ROOT / ".git"])
    source.reads.clear()
    found = identify(source, resolved(A, f"nightly-20260621-{SHA[:8]}"), ROOT, PATTERN, prior)
    assert (found.commit, found.warnings, source.reads) == (SHA, (), [])
    assert read_commit(source, resolved(A), ROOT, prior) == SHA and source.reads == []


def test_a_prior_read_of_the_checkout_still_reads_the_dir_a_gitdir_file_names() -> None:
    files = {
        (A, GIT): b"gitdir: /sgl-workspace/.git/modules/sglang\n",
        (A, "/sgl-workspace/.git/modules/sglang/HEAD"): f"{SHA}\n".encode(),
    }
    source = PerImageSource(files)
    prior = source.read(resolved(A), [], [ROOT / ".git"])
    source.reads.clear()
    assert read_commit(source, resolved(A), ROOT, prior) == SHA
    assert source.reads == [(A, ("/sgl-workspace/.git/modules/sglang",))]


WORKTREE = "/src/sglang/.git/worktrees/nightly"  # `git worktree add` keeps HEAD here


@pytest.mark.parametrize("commondir", ["../..", "/src/sglang/.git"])
@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_worktree_reads_its_own_head_and_the_refs_of_its_common_dir(
    commondir: str, packed: bool
) -> None:
    files = {
        (A, GIT): f"gitdir: {WORKTREE}\n".encode(),
        (A, WORKTREE + "/HEAD"): b"ref: refs/heads/nightly\n",
        (A, WORKTREE + "/commondir"): f"{commondir}\n".encode(),
        (A, "/src/sglang/.git/HEAD"): b"ref: refs/heads/main\n",  # the main checkout's
        (A, "/src/sglang/.git/refs/heads/main"): f"{OTHER}\n".encode(),
    }
    if packed:
        files[(A, "/src/sglang/.git/packed-refs")] = f"{SHA} refs/heads/nightly\n".encode()
    else:
        files[(A, "/src/sglang/.git/refs/heads/nightly")] = f"{SHA}\n".encode()
    source = PerImageSource(files)
    assert read_commit(source, resolved(A), ROOT) == SHA
    assert source.reads == [(A, (GIT,)), (A, (WORKTREE,)), (A, ("/src/sglang/.git",))]


def test_a_worktree_branch_missing_from_the_common_dir_is_an_error() -> None:
    files = {
        (A, GIT): f"gitdir: {WORKTREE}\n".encode(),
        (A, WORKTREE + "/HEAD"): b"ref: refs/heads/nightly\n",
        (A, WORKTREE + "/commondir"): b"../..\n",
        (A, WORKTREE + "/refs/heads/nightly"): f"{SHA}\n".encode(),  # git never looks here
    }
    with pytest.raises(ImageError, match=f"cannot resolve HEAD in {re.escape(WORKTREE)} "):
        read_commit(PerImageSource(files), resolved(A), ROOT)


def test_a_symbolic_ref_without_a_space_after_its_colon_is_followed() -> None:
    # git reads `ref:` and skips whatever whitespace follows, none included
    assert commit({".git/HEAD": "ref:refs/heads/main\n", ".git/refs/heads/main": SHA}) == SHA


def test_a_head_that_is_not_utf8_is_an_image_error_quoting_it() -> None:
    head = b"\xfe\xff" + SHA.encode()  # stray bytes before the commit
    source = PerImageSource({(A, str(ROOT / ".git/HEAD")): head})
    quoted = re.escape(f"(got '\ufffd\ufffd{SHA}')")
    with pytest.raises(ImageError, match=f"cannot resolve HEAD in {GIT} {quoted}"):
        identify(source, resolved(A), ROOT, None)


def test_an_untagged_image_is_not_checked_against_the_pattern() -> None:
    source = PerImageSource({(A, str(ROOT / ".git/HEAD")): f"{SHA}\n".encode()})
    assert identify(source, resolved(A, None), ROOT, PATTERN).warnings == ()


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
