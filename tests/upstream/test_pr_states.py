"""PR states as they happen upstream, each on a real git history built here."""

from __future__ import annotations

import time
from pathlib import Path

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.image.tags import NightlyTag
from patchkeeper.timeline import build
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.github import GitHubResolver, GitHubSettings
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState, UpstreamChange
from tests.github_double import GitHubDouble, iso

FILES = {"a.py": b"a1\na2\na3\n", "b.py": b"b1\nb2\nb3\n", "c.py": b"c1\nc2\nc3\n"}


def _history(tmp_path: Path) -> History:
    return History(tmp_path / "work", dict(FILES))


def _resolve(history: History, tmp_path: Path, *numbers: int) -> dict[int, UpstreamChange]:
    url = history.publish(tmp_path / "up.git")
    r = GitResolver(Upstream(git=url), GitMirror(url, tmp_path / "mirrors"))
    patches = [Patch(pr=n, why="w", witness="tests/witness.py") for n in numbers]
    r.prepare(patches)
    return {n: r.resolve("ps", p) for n, p in zip(numbers, patches, strict=True)}


def _branch(history: History, number: int, edits: list[list[Edit]], base: str = "main") -> str:
    """A PR branch of one commit per edit list; returns its head (recorded as the PR's)."""
    history.git("checkout", "-q", "-b", f"pr-{number}", base)
    for k, commit_edits in enumerate(edits):
        history.commit(f"Part {k} of {number}", commit_edits)
    history.git("checkout", "-q", "main")
    history.pulls[number] = history.head(f"pr-{number}")
    return history.pulls[number]


def test_rebase_merge_is_found_by_its_rebased_copies(tmp_path: Path) -> None:
    history = _history(tmp_path)
    head = _branch(history, 5, [[Edit("a.py", "a1\n", "A1\n")], [Edit("b.py", "b1\n", "B1\n")]])
    history.commit("Unrelated (#4)", [Edit("c.py", "c3\n", "C3\n")])
    history.git("cherry-pick", f"{head}~1", head)  # what GitHub's "rebase and merge" does
    copy = history.head("main")
    change = _resolve(history, tmp_path, 5)[5]
    assert change.state is PrState.MERGED and change.landed_as == "rebase"
    assert change.merge_commit == copy != head
    assert "+A1" in change.diff and "+B1" in change.diff  # every commit of the PR
    assert "+C3" not in change.diff


def test_fast_forward_lands_the_head_itself(tmp_path: Path) -> None:
    history = _history(tmp_path)
    history.commit("Before (#3)", [Edit("c.py", "c1\n", "C1\n")])
    head = _branch(history, 6, [[Edit("a.py", "a2\n", "A2\n")]])
    history.git("merge", "-q", "--ff-only", "pr-6")
    history.commit("After (#7)", [Edit("c.py", "c2\n", "C2\n")])
    change = _resolve(history, tmp_path, 6)[6]
    assert change.state is PrState.MERGED and change.landed_as == "fast-forward"
    assert change.merge_commit == head  # not the first-parent commit after it
    assert "+A2" in change.diff and "C1" not in change.diff and "C2" not in change.diff


def test_merge_commit_without_the_pr_in_its_subject(tmp_path: Path) -> None:
    history = _history(tmp_path)
    _branch(history, 8, [[Edit("b.py", "b2\n", "B2\n")]])
    history.commit("Meanwhile (#9)", [Edit("c.py", "c1\n", "C1\n")])
    history.git("merge", "-q", "--no-ff", "-m", "Merge branch 'pr-8'", "pr-8")
    merge = history.head("main")
    history.commit("Later (#10)", [Edit("c.py", "c2\n", "C2\n")])
    change = _resolve(history, tmp_path, 8)[8]
    assert change.state is PrState.MERGED and change.landed_as == "merge commit"
    assert change.merge_commit == merge  # the oldest first-parent commit holding the head
    assert "+B2" in change.diff and "C1" not in change.diff


def test_git_revert_makes_a_pr_reverted(tmp_path: Path) -> None:
    history = _history(tmp_path)
    landed = history.squash_pr(11, "Fix a", [Edit("a.py", "a1\n", "fixed\n")])
    history.commit("Other (#12)", [Edit("c.py", "c1\n", "C1\n")])
    history.git("revert", "--no-edit", landed)
    revert = history.head("main")
    change = _resolve(history, tmp_path, 11)[11]
    assert change.state is PrState.REVERTED
    assert (change.merge_commit, change.reverted_by) == (landed, revert)
    assert "+fixed" in change.diff  # still the PR's change, to port again


def test_githubs_revert_pr_makes_a_pr_reverted_and_reverting_it_back_merged(
    tmp_path: Path,
) -> None:
    history = _history(tmp_path)
    landed = history.squash_pr(13, "Fix b", [Edit("b.py", "b1\n", "fixed\n")])
    history.commit('Revert "Fix b (#13)" (#14)', [Edit("b.py", "fixed\n", "b1\n")])
    revert = history.head("main")
    assert _resolve(history, tmp_path / "one", 13)[13].reverted_by == revert
    history.commit('Revert "Revert "Fix b (#13)" (#14)" (#15)', [Edit("b.py", "b1\n", "fixed\n")])
    change = _resolve(history, tmp_path / "two", 13)[13]
    assert change.state is PrState.MERGED and change.merge_commit == landed
    assert change.reverted_by is None


def test_reland_newest_landing_wins(tmp_path: Path) -> None:
    history = _history(tmp_path)
    first = history.squash_pr(16, "Fix c", [Edit("c.py", "c1\n", "fixed\n")])
    history.git("revert", "--no-edit", first)
    history.commit("Fix c (#16)", [Edit("c.py", "c1\n", "fixed\n")])  # relanded as is
    again = history.head("main")
    change = _resolve(history, tmp_path, 16)[16]
    assert change.state is PrState.MERGED
    assert change.merge_commit == again and change.reverted_by is None


def test_closed_pr_is_ported_from_its_head_with_a_warning(tmp_path: Path) -> None:
    history = _history(tmp_path)
    head = history.closed_pr(17, "Abandoned", [Edit("a.py", "a3\n", "A3\n")])
    history.commit("Unrelated (#18)", [Edit("c.py", "c1\n", "C1\n")])
    change = _resolve(history, tmp_path, 17)[17]
    assert change.state is PrState.CLOSED and change.head == head and "+A3" in change.diff
    [note] = change.notes()
    assert "closed without being merged" in note and head[:12] in note
    assert "tests/witness.py" in note and "prune --witness-report" in note


def test_closed_pr_whose_commits_landed_in_another_merge_is_merged(tmp_path: Path) -> None:
    history = _history(tmp_path)
    head = history.closed_pr(19, "Closed, but carried", [Edit("a.py", "a2\n", "A2\n")])
    history.git("checkout", "-q", "-b", "carrier", head)
    history.commit("More", [Edit("b.py", "b2\n", "B2\n")])
    history.git("checkout", "-q", "main")
    history.git(
        "merge", "-q", "--no-ff", "-m", "Merge pull request #20 from dev/carrier", "carrier"
    )
    merge = history.head("main")
    change = _resolve(history, tmp_path, 19)[19]
    assert change.state is PrState.MERGED and change.merge_commit == merge
    assert change.notes() == []


def test_superseded_names_the_commit_that_removed_its_lines(tmp_path: Path) -> None:
    history = _history(tmp_path)
    history.squash_pr(21, "Add validator", [Edit("a.py", "a2\n", "a2\nvalidator()\n")])
    change_sites = history.commit("Touch a.py (#22)", [Edit("a.py", "a1\n", "a1 touched\n")])
    history.commit("Drop the validator (#23)", [Edit("a.py", "validator()\n", "")])
    remover = history.head("main")
    history.commit("Touch again (#24)", [Edit("a.py", "a3\n", "a3 again\n")])
    url = history.publish(tmp_path / "up.git")
    r = GitResolver(Upstream(git=url), GitMirror(url, tmp_path / "mirrors"))
    r.prepare([Patch(pr=21, why="w")])
    change = r.resolve("ps", Patch(pr=21, why="w"))
    assert r.changed_by(change, history.head("main")) == remover != change_sites
    assert r.changed_by(change, change_sites) is None  # not yet changed there


def test_github_decides_a_rebase_merge_git_cannot_see_and_keeps_gits_revert(
    github_double: GitHubDouble, tmp_path: Path
) -> None:
    history = _history(tmp_path)
    head = _branch(history, 25, [[Edit("a.py", "a1\n", "A1\n")]])
    history.commit("Landed under another subject", [Edit("a.py", "a1\n", "A1\n")])
    landed = history.head("main")
    squashed = history.squash_pr(26, "Fix b", [Edit("b.py", "b1\n", "B1\n")])
    history.git("revert", "--no-edit", squashed)
    url = history.publish(tmp_path / "up.git")
    now = iso(time.time())
    for number, merge, head_sha in ((25, landed, head), (26, squashed, history.pulls[26])):
        github_double.add_pull(
            "o/r",
            number,
            title=f"GitHub {number}",
            state="closed",
            merged=True,
            merged_at=now,
            merge_commit_sha=merge,
            head_sha=head_sha,
            base_sha=history.head("main~3"),
            files=["a.py"],
        )
    git = GitResolver(Upstream(git=url, github="o/r"), GitMirror(url, tmp_path / "mirrors"))
    patches = [Patch(pr=25, why="w"), Patch(pr=26, why="w")]
    offline = {p.pr: (git.prepare(patches), git.resolve("ps", p))[1] for p in patches}
    assert offline[25].state is PrState.CLOSED  # git alone finds no landing
    online = GitHubResolver(git, GitHubSettings.from_env(), warn=lambda m: None)
    online.prepare(patches)
    rebased, reverted = (online.resolve("ps", p) for p in patches)
    assert rebased.state is PrState.MERGED and rebased.merge_commit == landed
    assert rebased.landed_as == "GitHub" and "+A1" in rebased.diff
    assert reverted.state is PrState.REVERTED and reverted.title == "GitHub 26"


def test_a_reverted_pr_is_in_the_nightlies_between_landing_and_revert_only(
    tmp_path: Path,
) -> None:
    history = _history(tmp_path)
    before = history.head("main")
    landed = history.squash_pr(27, "Fix a", [Edit("a.py", "a1\n", "fixed\n")])
    history.git("revert", "--no-edit", landed)
    reverted = history.head("main")
    url = history.publish(tmp_path / "up.git")
    r = GitResolver(Upstream(git=url), GitMirror(url, tmp_path / "mirrors"))
    r.prepare([Patch(pr=27, why="w")])
    change = r.resolve("ps", Patch(pr=27, why="w"))
    commits = [before, landed, reverted]
    tags = [NightlyTag(f"2026060{i}", f"n-2026060{i}", c[:8]) for i, c in enumerate(commits, 1)]
    [row] = build(r, [change], tags, commits).rows
    assert row.contained == (False, True, False)
