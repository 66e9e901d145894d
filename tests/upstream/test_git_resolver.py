"""The git-only resolver against real repositories laid out as GitHub lays them out."""

from pathlib import Path

import pytest

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.errors import UnreachableError, UpstreamError
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState


def edit(text: str) -> list[Edit]:
    return [Edit("f.txt", "base\n", f"base\n{text}\n")]


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[History, str]:
    history = History(tmp_path / "work", {"f.txt": b"base\n", "g.txt": b"g\n", "h.txt": b"h\n"})
    history.squash_pr(1, "Squashed fix", edit("one"))
    history.merge_pr(2, "Merged fix", [Edit("g.txt", "g\n", "g2\n")])
    history.open_pr(3, "Open fix", [Edit("h.txt", "h\n", "h3\n")], base="HEAD~1")
    history.closed_pr(4, "Abandoned", edit("four"))
    return history, history.publish(tmp_path / "upstream.git")


def resolver(url: str, tmp_path: Path) -> GitResolver:
    up = Upstream(git=url, branch="main")
    return GitResolver(up, GitMirror(url, tmp_path / "mirrors"))


def patches(*numbers: int) -> tuple[Patch, ...]:
    return tuple(Patch(pr=n, why="w") for n in numbers)


def test_states_heads_and_diffs(upstream: tuple[History, str], tmp_path: Path) -> None:
    history, url = upstream
    r = resolver(url, tmp_path)
    r.prepare(patches(1, 2, 3, 4))
    squashed, merged, opened, closed = (r.resolve("ps", p) for p in patches(1, 2, 3, 4))

    assert squashed.state is PrState.MERGED
    assert squashed.head == history.pulls[1]
    assert squashed.merge_commit == history.head("main~1")
    assert "+one" in squashed.diff and squashed.title == "Squashed fix (#1)"

    assert merged.state is PrState.MERGED
    assert merged.merge_commit == history.head("main")
    assert "-g\n+g2" in merged.diff

    assert opened.state is PrState.OPEN
    assert opened.base == history.head("main~1")  # where it branched off main
    assert "+h3" in opened.diff

    assert closed.state is PrState.CLOSED
    assert "+four" in closed.diff


def test_containment_answers_for_many_tips(upstream: tuple[History, str], tmp_path: Path) -> None:
    history, url = upstream
    r = resolver(url, tmp_path)
    r.prepare(patches(1, 2))
    one, two = (r.resolve("ps", p).merge_commit or "" for p in patches(1, 2))
    first = history.head("main~1")
    found = r.contained([one, two], [first, history.head("main")])
    assert found[first] == {one}
    assert found[history.head("main")] == {one, two}


def test_unknown_pr_is_named(upstream: tuple[History, str], tmp_path: Path) -> None:
    _, url = upstream
    r = resolver(url, tmp_path)
    r.prepare(patches(99))
    with pytest.raises(UpstreamError, match="PR #99 not found"):
        r.resolve("ps", Patch(pr=99, why="w"))


def test_unreachable_remote_is_exit_3_and_hides_credentials(tmp_path: Path) -> None:
    url = f"file://user:s3cret@{tmp_path}/nowhere.git"
    r = resolver(url, tmp_path)
    with pytest.raises(UnreachableError) as err:
        r.prepare(patches(1))
    assert err.value.exit_code == 3
    assert "s3cret" not in str(err.value)


def test_mirror_is_reused_and_refetches(upstream: tuple[History, str], tmp_path: Path) -> None:
    history, url = upstream
    r = resolver(url, tmp_path)
    r.prepare(patches(1))
    mirror_path = r.mirror.path
    history.squash_pr(5, "Later fix", edit("five"))
    bare = url.removeprefix("file://")
    history.git("push", "-q", bare, "main", f"{history.pulls[5]}:refs/pull/5/head")
    again = resolver(url, tmp_path)
    assert again.mirror.path == mirror_path
    again.prepare(patches(5))
    assert again.resolve("ps", Patch(pr=5, why="w")).state is PrState.MERGED
