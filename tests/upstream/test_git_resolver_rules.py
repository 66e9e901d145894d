"""Which commit landed a PR when its number appears more than once on the branch."""

from pathlib import Path

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState


def test_the_newest_landing_of_a_pr_is_its_merge_commit(tmp_path: Path) -> None:
    # Landed, reverted, landed again: the re-land is what the branch carries now.
    history = History(tmp_path / "work", {"f.txt": b"base\n"})
    first = history.squash_pr(7, "Fix", [Edit("f.txt", "base\n", "base\nfix\n")])
    history.commit('Revert "Fix (#7)"', [Edit("f.txt", "base\nfix\n", "base\n")])
    again = history.commit("Fix, take two (#7)", [Edit("f.txt", "base\n", "base\nfix2\n")])
    history.commit("Unrelated (#8)", [Edit("f.txt", "base\nfix2\n", "base\nfix2\nmore\n")])
    url = history.publish(tmp_path / "upstream.git")
    resolver = GitResolver(Upstream(git=url, branch="main"), GitMirror(url, tmp_path / "m"))
    patch = Patch(pr=7, why="w")
    resolver.prepare([patch])
    change = resolver.resolve("ps", patch)
    assert change.state is PrState.MERGED
    assert change.merge_commit == again != first
    assert "+fix2" in change.diff and "+fix\n" not in change.diff
    assert change.base == history.head("main~2")  # the re-land's first parent
