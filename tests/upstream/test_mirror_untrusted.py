"""The cached mirror and git's transports are untrusted: damaged caches heal, credentials stay
off command lines, slow remotes are abandoned, and a PR's author cannot crash a sync."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.errors import OutputError, UnreachableError, UpstreamError
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror, git_processes_in
from tests.git_http import GitHttpServer


@pytest.fixture()
def history(tmp_path: Path) -> History:
    history = History(tmp_path / "work", {"pkg/fix.py": b"a\nb\nc\n", "pkg/other.py": b"o\n"})
    history.squash_pr(1, "Fix", [Edit("pkg/fix.py", "b\n", "b2\n")])
    history.open_pr(2, "Open fix", [Edit("pkg/fix.py", "c\n", "c2\n")])
    return history


def _resolver(url: str, root: Path, warnings: list[str] | None = None) -> GitResolver:
    sink = warnings if warnings is not None else []
    return GitResolver(Upstream(git=url), GitMirror(url, root, warn=sink.append))


def _synced(url: str, root: Path, warnings: list[str] | None = None) -> GitResolver:
    r = _resolver(url, root, warnings)
    r.prepare((Patch(pr=1, why="w"),))
    assert "+b2" in r.resolve("ps", Patch(pr=1, why="w")).diff
    return r


def test_a_file_in_the_mirrors_place_is_moved_aside_and_git_runs_nowhere_else(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = history.publish(tmp_path / "up.git")
    place = GitMirror(url, tmp_path / "mirrors").path
    shutil.rmtree(place)
    place.write_text("not a repository\n")
    checkout = tmp_path / "checkout"  # where the user runs patchkeeper
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    warnings: list[str] = []
    r = _synced(url, tmp_path / "mirrors", warnings)
    assert list(checkout.iterdir()) == []  # no HEAD, objects/, refs/ where the user stands
    assert r.mirror.path.is_dir() and (r.mirror.path / "HEAD").is_file()
    (aside,) = tmp_path.joinpath("mirrors").glob(f"{place.name}.damaged-*")
    assert aside.read_text() == "not a repository\n"
    assert len(warnings) == 1 and "not a directory" in warnings[0] and str(aside) in warnings[0]


def _remove_objects(mirror: Path) -> None:
    shutil.rmtree(mirror / "objects")


def _remove_refs(mirror: Path) -> None:
    shutil.rmtree(mirror / "refs")


def _garble_config(mirror: Path) -> None:
    (mirror / "config").write_bytes(b"[core\n\x00garbage = = =\n")


def _break_a_ref(mirror: Path) -> None:
    (mirror / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (mirror / "refs" / "heads" / "main").write_text("garbage\n")


def _garble_packed_refs(mirror: Path) -> None:
    (mirror / "packed-refs").write_text("# pack-refs with: peeled\nzz refs/heads/main\n")


def _garble_shallow(mirror: Path) -> None:
    (mirror / "shallow").write_text("garbage\n")


def _garble_head(mirror: Path) -> None:
    (mirror / "HEAD").write_text("garbage")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_remove_objects, "no objects"),
        (_remove_refs, "no refs"),
        (_garble_config, "unreadable config"),
        (_break_a_ref, "broken refs"),
        (_garble_packed_refs, "broken refs"),
        (_garble_shallow, "bad shallow line"),
        (_garble_head, "not a git repository"),
    ],
)
def test_a_damaged_mirror_is_moved_aside_rebuilt_and_said(
    history: History, tmp_path: Path, damage: object, said: str
) -> None:
    url = history.publish(tmp_path / "up.git")
    mirror = _synced(url, tmp_path / "mirrors").mirror.path
    assert callable(damage)
    damage(mirror)
    warnings: list[str] = []
    again = _synced(url, tmp_path / "mirrors", warnings)  # heals, then works
    assert again.mirror.path == mirror
    assert len(warnings) == 1 and "damaged" in warnings[0] and said in warnings[0]
    assert len(list(mirror.parent.glob(f"{mirror.name}.damaged-*"))) == 1
    warnings.clear()
    _synced(url, tmp_path / "mirrors", warnings)
    assert warnings == []  # healed for good: the next run says nothing


def test_a_cache_directory_that_is_a_file_is_bad_input_naming_it(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = history.publish(tmp_path / "up.git")
    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(cache))
    with pytest.raises(OutputError, match=f"cache directory .*{cache}: not a directory") as err:
        GitMirror(url)
    assert err.value.exit_code == 2
    monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(tmp_path / "ok"))
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "mirrors").write_text("")
    with pytest.raises(OutputError, match=r"mirror cache directory .*mirrors: not a directory"):
        GitMirror(url)


def test_a_pr_head_with_no_history_in_common_is_named_not_a_crash(
    history: History, tmp_path: Path
) -> None:
    history.git("checkout", "-q", "--orphan", "pr-9")
    history.commit("Unrelated root", [Edit("pkg/fix.py", "a\n", "A\n")])
    history.pulls[9] = history.head("pr-9")
    history.git("checkout", "-q", "-f", "main")
    url = history.publish(tmp_path / "up.git")
    r = _resolver(url, tmp_path / "mirrors")
    patches = (Patch(pr=1, why="w"), Patch(pr=9, why="w"))
    r.prepare(patches)  # the other PRs are prepared all the same
    assert "+b2" in r.resolve("ps", patches[0]).diff
    with pytest.raises(UpstreamError, match=r"PR #9: its head \w{12} shares no history") as err:
        r.resolve("ps", patches[1])
    assert err.value.exit_code == 2


# --- credentials and git's command lines --------------------------------------------------


def _argv_recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git process (those git starts itself, `git remote-http` among them) records its
    command line in the returned file before it runs the real git."""
    real_exec = Path(
        subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    log = tmp_path / "argv.log"
    wrapped = tmp_path / "git-exec"
    wrapped.mkdir()
    for tool in real_exec.iterdir():
        (wrapped / tool.name).symlink_to(tool)
    for name in ("git", "git-remote-http", "git-remote-https"):
        (wrapped / name).unlink(missing_ok=True)
        (wrapped / name).write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {log}\nexec {real_exec / name} "$@"\n'
        )
        (wrapped / name).chmod(0o755)
    monkeypatch.setenv("GIT_EXEC_PATH", str(wrapped))
    monkeypatch.setenv("PATH", f"{wrapped}{os.pathsep}{os.environ['PATH']}")
    return log


def test_no_git_command_line_ever_carries_the_credentials(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    history.publish(served / "up.git")
    token = "ghs_" + "S3cr3tT0k3n" * 4  # a GITHUB_TOKEN-shaped password
    monkeypatch.setenv("GITHUB_TOKEN", token)
    log = _argv_recorder(tmp_path, monkeypatch)
    with GitHttpServer(served, "x-access-token", token) as server:
        url = server.url("up.git", f"x-access-token:{token}")
        r = _synced(url, tmp_path / "mirrors")
        blob = subprocess.run(
            ["git", "-C", history.path, "rev-parse", "main~1:pkg/other.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # A lazy fetch of a blob nothing prefetched: git starts git again, by itself.
        assert r.mirror.repo.git.cat_file("-p", blob) == "o"
        assert any(ok for path, ok in server.requests if "git-upload-pack" in path)
    argv = log.read_text()
    assert "remote-http" in argv and "fetch" in argv  # what ran was recorded
    assert token not in argv and "S3cr3t" not in argv and "x-access-token" not in argv


# --- slow remotes -----------------------------------------------------------------------


class DripServer:
    """HTTP on loopback that answers every request with headers, then one byte a second."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/up.git"

    def __enter__(self) -> DripServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()

    def _serve(self) -> None:
        with self.sock:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-"
                b"advertisement\r\nContent-Length: 100000\r\n\r\n"
            )
            for _ in range(120):  # two minutes at most, whoever gives up first
                if self.stop.wait(1):
                    return
                try:
                    conn.sendall(b"0")
                except OSError:
                    return


def test_a_git_remote_that_drip_feeds_is_abandoned_at_the_low_speed_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKEEPER_LOW_SPEED_TIME", "2")
    with DripServer() as server:
        r = _resolver(server.url, tmp_path / "mirrors")
        with pytest.raises(UnreachableError, match="too slow") as err:
            r.prepare((Patch(pr=1, why="w"),))
    assert err.value.exit_code == 3


# --- stale locks --------------------------------------------------------------------------


@pytest.fixture()
def foreign_git(tmp_path: Path) -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("how", ["--git-dir", "GIT_DIR"])
def test_locks_held_by_a_git_started_elsewhere_are_left_alone(
    history: History, tmp_path: Path, foreign_git: list[int], how: str
) -> None:
    url = history.publish(tmp_path / "up.git")
    r = _synced(url, tmp_path / "mirrors")
    lock = r.mirror.path / "refs" / "heads" / "main.lock"
    lock.write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pidfile = tmp_path / "git.pid"
    command = (
        f"git --git-dir={r.mirror.path} cat-file --batch"
        if how == "--git-dir"
        else f"GIT_DIR={r.mirror.path} git cat-file --batch"
    )
    subprocess.run(
        ["sh", "-c", f"sleep 60 | {command} & echo $! > {pidfile}"],
        cwd=elsewhere,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    pid = int(pidfile.read_text())
    foreign_git.append(pid)
    while Path(f"/proc/{pid}/comm").read_text().strip() != "git":
        time.sleep(0.01)  # until the shell has exec'd git
    assert os.readlink(f"/proc/{pid}/cwd") == str(elsewhere)
    assert git_processes_in(r.mirror.path) == [pid]
    with pytest.raises(UpstreamError, match=rf"in use by git \(pid {pid}\)"):
        r.prepare((Patch(pr=1, why="w"),))
    assert lock.exists()
