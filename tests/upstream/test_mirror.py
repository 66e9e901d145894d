"""The partial mirror against real repositories over real git transports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.errors import UpstreamError
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror, git_processes_in, split_credentials
from tests.git_http import GitHttpServer


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _missing(mirror: Path) -> set[str]:
    listing = _git(mirror, "rev-list", "--objects", "--missing=print", "--all")
    return {line[1:] for line in listing.splitlines() if line.startswith("?")}


@pytest.fixture()
def history(tmp_path: Path) -> History:
    files = {f"pkg/m{i}.py": f"module {i}\n".encode() + b"x\n" * 50 for i in range(20)}
    history = History(tmp_path / "work", {**files, "pkg/fix.py": b"a\nb\nc\n"})
    for i in range(5):
        history.squash_pr(100 + i, f"Churn {i}", [Edit(f"pkg/m{i}.py", "module", f"v{i}")])
    history.squash_pr(1, "Fix", [Edit("pkg/fix.py", "b\n", "b2\n")])
    history.open_pr(2, "Open fix", [Edit("pkg/fix.py", "c\n", "c2\n")])
    history.git("branch", "release/v1", "HEAD~3")
    return history


def _resolver(url: str, root: Path, warnings: list[str] | None = None) -> GitResolver:
    sink = warnings if warnings is not None else []
    return GitResolver(Upstream(git=url), GitMirror(url, root, warn=sink.append))


def test_blobless_fetch_of_one_branch_and_the_prs_refs(history: History, tmp_path: Path) -> None:
    url = history.publish(tmp_path / "up.git")
    history.git("push", "-q", str(tmp_path / "up.git"), "release/v1")
    warnings: list[str] = []
    r = _resolver(url, tmp_path / "mirrors", warnings)
    r.prepare((Patch(pr=1, why="w"), Patch(pr=2, why="w")))
    refs = _git(r.mirror.path, "for-each-ref", "--format=%(refname)").split()
    assert refs == ["refs/heads/main", "refs/pull/1/head", "refs/pull/2/head", "refs/pull/2/merge"]
    assert warnings == []
    missing = _missing(r.mirror.path)
    # The churned modules' old versions were never fetched; the fix's blobs were.
    assert _git(Path(history.path), "rev-parse", "main~3:pkg/m1.py") in missing
    for rev in ("main~1:pkg/fix.py", "main:pkg/fix.py", "refs/pull/2/head:pkg/fix.py"):
        blob = _git(r.mirror.path, "rev-parse", rev)
        assert blob not in missing, rev
    assert (r.mirror.path / "objects" / "info" / "commit-graphs").is_dir()
    config = (r.mirror.path / "config").read_text()
    assert "promisor = true" in config and "partialclonefilter = blob:none" in config


def test_diffs_and_reads_need_no_lazy_fetch(history: History, tmp_path: Path) -> None:
    bare = tmp_path / "up.git"
    url = history.publish(bare)
    r = _resolver(url, tmp_path / "mirrors")
    patches = (Patch(pr=1, why="w"), Patch(pr=2, why="w"))
    r.prepare(patches)
    bare.rename(tmp_path / "gone.git")  # every later read must be served from the mirror
    merged, opened = (r.resolve("ps", p) for p in patches)
    assert "-b\n+b2" in merged.diff and "-c\n+c2" in opened.diff
    for change in (merged, opened):
        for commit in (change.base, change.merge_commit or change.head):
            assert _git(r.mirror.path, "cat-file", "-p", f"{commit}:pkg/fix.py")


def test_warm_sync_fetches_only_new_objects(history: History, tmp_path: Path) -> None:
    bare = tmp_path / "up.git"
    url = history.publish(bare)
    r = _resolver(url, tmp_path / "mirrors")
    r.prepare((Patch(pr=1, why="w"),))
    packs = set((r.mirror.path / "objects" / "pack").glob("*.pack"))
    _resolver(url, tmp_path / "mirrors").prepare((Patch(pr=1, why="w"),))
    assert set((r.mirror.path / "objects" / "pack").glob("*.pack")) == packs  # nothing new
    history.squash_pr(3, "Later", [Edit("pkg/m9.py", "module", "later")])
    history.git("push", "-q", str(bare), "main", f"{history.pulls[3]}:refs/pull/3/head")
    again = _resolver(url, tmp_path / "mirrors")
    again.prepare((Patch(pr=1, why="w"), Patch(pr=3, why="w")))
    new = set((r.mirror.path / "objects" / "pack").glob("*.pack")) - packs
    counted = sum(_git(r.mirror.path, "verify-pack", "-v", str(p)).count(" commit ") for p in new)
    assert counted == 2  # the squash commit and the PR's head, nothing older
    assert again.resolve("ps", Patch(pr=3, why="w")).state == "merged"


def test_vanished_merge_ref_is_pruned(history: History, tmp_path: Path) -> None:
    bare = tmp_path / "up.git"
    url = history.publish(bare)
    r = _resolver(url, tmp_path / "mirrors")
    r.prepare((Patch(pr=2, why="w"),))
    assert r.resolve("ps", Patch(pr=2, why="w")).state == "open"
    _git(bare, "update-ref", "-d", "refs/pull/2/merge")  # no longer mergeable, or closed
    r.prepare((Patch(pr=2, why="w"),))
    assert not r.mirror.has_commit("refs/pull/2/merge")
    assert r.resolve("ps", Patch(pr=2, why="w")).state == "closed"


def test_missing_branch_is_named(history: History, tmp_path: Path) -> None:
    url = history.publish(tmp_path / "up.git")
    r = GitResolver(Upstream(git=url, branch="nope"), GitMirror(url, tmp_path / "m"))
    with pytest.raises(UpstreamError, match="has no branch 'nope'"):
        r.prepare((Patch(pr=1, why="w"),))


def test_server_without_filters_gets_a_full_fetch_and_a_warning(
    history: History, tmp_path: Path
) -> None:
    bare = tmp_path / "up.git"
    url = history.publish(bare)
    _git(bare, "config", "uploadpack.allowFilter", "false")
    warnings: list[str] = []
    r = _resolver(url, tmp_path / "mirrors", warnings)
    r.prepare((Patch(pr=1, why="w"),))
    assert len(warnings) == 1 and "uploadpack.allowFilter" in warnings[0]
    assert "fetched every blob" in warnings[0]
    assert _missing(r.mirror.path) == set()
    assert "+b2" in r.resolve("ps", Patch(pr=1, why="w")).diff


def test_stale_locks_of_a_killed_git_are_removed(history: History, tmp_path: Path) -> None:
    url = history.publish(tmp_path / "up.git")
    warnings: list[str] = []
    r = _resolver(url, tmp_path / "mirrors", warnings)
    r.prepare((Patch(pr=1, why="w"),))
    stale = [r.mirror.path / "packed-refs.lock", r.mirror.path / "refs" / "heads" / "main.lock"]
    for lock in stale:
        lock.write_text("")
    r.prepare((Patch(pr=1, why="w"),))
    assert not any(lock.exists() for lock in stale)
    assert any("packed-refs.lock" in w and "stale" in w for w in warnings)


def test_locks_held_by_a_live_git_are_left_alone(history: History, tmp_path: Path) -> None:
    url = history.publish(tmp_path / "up.git")
    r = _resolver(url, tmp_path / "mirrors")
    r.prepare((Patch(pr=1, why="w"),))
    lock = r.mirror.path / "packed-refs.lock"
    lock.write_text("")
    # A git that outlived its parent (as after `kill -9` of a sync): not our child.
    pidfile = tmp_path / "git.pid"
    subprocess.run(
        ["sh", "-c", f"sleep 60 | git cat-file --batch & echo $! > {pidfile}"],
        cwd=r.mirror.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    pid = int(pidfile.read_text())
    try:
        while Path(f"/proc/{pid}/comm").read_text().strip() != "git":
            time.sleep(0.01)  # until the shell has exec'd git
        assert git_processes_in(r.mirror.path) == [pid]
        with pytest.raises(UpstreamError, match=rf"in use by git \(pid {pid}\)"):
            r.prepare((Patch(pr=1, why="w"),))
        assert lock.exists()
    finally:
        os.kill(pid, signal.SIGTERM)


def test_credentials_are_split_from_the_stored_url() -> None:
    assert split_credentials("https://x-access-token:ghp_s3cret@github.com/o/r.git") == (
        "https://github.com/o/r.git",
        "https://x-access-token:ghp_s3cret@github.com/o/r.git",
    )
    assert split_credentials("https://github.com/o/r.git") == ("https://github.com/o/r.git", None)
    assert split_credentials("git@github.com:o/r.git") == ("git@github.com:o/r.git", None)
    assert split_credentials("ssh://git@host/r.git") == ("ssh://git@host/r.git", None)


def test_an_old_full_mirror_is_converted_in_place(history: History, tmp_path: Path) -> None:
    url = history.publish(tmp_path / "up.git")
    mirror = GitMirror(url, tmp_path / "mirrors")
    shutil.rmtree(mirror.path)
    subprocess.run(["git", "clone", "-q", "--mirror", url, str(mirror.path)], check=True)
    r = _resolver(url, tmp_path / "mirrors")
    r.prepare((Patch(pr=1, why="w"),))
    assert _git(r.mirror.path, "config", "extensions.partialClone") == "upstream"
    assert "+b2" in r.resolve("ps", Patch(pr=1, why="w")).diff


def test_credentials_reach_git_over_http_but_never_the_mirror(
    history: History, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    history.publish(served / "up.git")
    with GitHttpServer(served, "bot", "s3cret-pass") as server:
        url = server.url("up.git", "bot:s3cret-pass")
        r = _resolver(url, tmp_path / "mirrors")
        r.prepare((Patch(pr=1, why="w"),))
        assert "+b2" in r.resolve("ps", Patch(pr=1, why="w")).diff
        # A blob nothing prefetched: git's own lazy fetch, authenticated from the environment.
        blob = _git(Path(history.path), "rev-parse", "main~3:pkg/m1.py")
        assert blob in _missing(r.mirror.path)
        assert r.mirror.repo.git.cat_file("-p", blob).startswith("v1 1")
        assert any(ok for path, ok in server.requests if "git-upload-pack" in path)
        stored = "".join(
            p.read_text(errors="replace")
            for p in r.mirror.path.rglob("*")
            if p.is_file() and p.stat().st_size < 1_000_000
        )
        assert "s3cret-pass" not in stored
        assert _git(r.mirror.path, "config", "remote.upstream.url") == server.url("up.git")
        # Without patchkeeper's environment, git in the mirror has no credentials at all.
        other = _git(Path(history.path), "rev-parse", "main~3:pkg/m2.py")
        assert other in _missing(r.mirror.path)
        lazy = subprocess.run(
            ["git", "-C", str(r.mirror.path), "cat-file", "-p", other],
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            capture_output=True,
            check=False,
        )
        assert lazy.returncode != 0
        by_hand = subprocess.run(
            ["git", "-C", str(r.mirror.path), "cat-file", "-p", other],
            env=r.mirror.git_env(),
            capture_output=True,
            check=True,
        )
        assert by_hand.stdout.startswith(b"module 2") or by_hand.stdout.startswith(b"v2 2")
