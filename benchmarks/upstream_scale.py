"""Benchmark: what a sync fetches from an upstream of SGLang's shape.

A synthetic upstream built with `git fast-import` (15,001 first-parent commits with squash
subjects and "Merge pull request" merges, 201 branches, 3,000 PR heads + 300 merge refs,
3,158 files of incompressible text, a pack of several hundred MB) is served by `git daemon`
on 127.0.0.1 (with `uploadpack.allowFilter`) behind a TCP proxy that counts the bytes on
the wire. For a patchset of 4 PRs (3 merged at various depths, 1 open) it measures, side by
side in one run: cold, warm, and after 50 new upstream commits, the bytes down, wall time
and size on disk of

- patchkeeper's mirror (`GitResolver.prepare`, then every PR's diff),
- the previous mirror (ls-remote of the PR refs, then every branch and the PR refs),
- `git clone --mirror` (then `git fetch` in it),
- the partial-clone bound: `--filter=blob:none --single-branch`, the 4 PRs' refs, and the
  blobs their diffs need (fetched lazily by `git diff`).

The generated upstream is cached under `--cache` and reused. Targets (only reported):
cold bytes <= 1.2x the bound and <= 15% of the full mirror; warm <= one negotiation plus
the new objects.

Run: nice .venv/bin/python benchmarks/upstream_scale.py --cache DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FIRST_PARENT = 15_001
MERGE_EVERY = 10  # every 10th first-parent commit merges a 3-commit side branch
SIDE_LENGTH = 3
BRANCHES = 201
MERGED_HEADS = 2_700  # the newest squash merges keep refs/pull/N/head
OPEN_PRS = 300  # open PRs: a head and a merge ref each
FILES = 3_158
FILE_BYTES = 6_000  # initial size of a file (random bytes, base64 text)
CHANGE_BYTES = 20_000  # a commit rewrites one file with this many fresh random bytes
NEW_COMMITS = 50
EPOCH = 1_700_000_000
AUTHOR = "Upstream Dev <dev@example.invalid>"
SPECIAL = {  # PR number -> (first-parent depth from the tip, how it lands)
    90_001: (25, "squash"),
    90_002: (3_000, "merge"),
    90_003: (12_000, "squash"),
    90_004: (0, "open"),
}
SPECIAL_PATH = "python/sglang/srt/entrypoints/anthropic/serving_{}.py"
TARGET_OF_BOUND = 1.2
TARGET_OF_MIRROR = 0.15


def _text(rng: random.Random, size: int) -> bytes:
    """`size` random bytes as base64 lines: text that barely compresses or deltas."""
    raw = base64.b64encode(rng.randbytes(size))
    return b"\n".join(raw[i : i + 76] for i in range(0, len(raw), 76)) + b"\n"


def _paths() -> list[str]:
    dirs = [f"python/sglang/srt/area_{d:02d}" for d in range(60)]
    return [f"{dirs[i % len(dirs)]}/module_{i:04d}.py" for i in range(FILES - len(SPECIAL))]


class Stream:
    """Writes a fast-import stream; marks are assigned in order."""

    def __init__(self, out: Callable[[bytes], object], start: int) -> None:
        self.out = out
        self.mark = 0
        self.clock = start

    def blob(self, data: bytes) -> int:
        self.mark += 1
        self.out(b"blob\nmark :%d\ndata %d\n%s\n" % (self.mark, len(data), data))
        return self.mark

    def commit(
        self,
        ref: str,
        message: str,
        parents: Sequence[int | str],
        files: Sequence[tuple[str, int]],
    ) -> int:
        self.mark += 1
        self.clock += 600
        msg = message.encode()
        lines = [f"commit {ref}", f"mark :{self.mark}"]
        lines += [f"author {AUTHOR} {self.clock} +0000", f"committer {AUTHOR} {self.clock} +0000"]
        lines.append(f"data {len(msg)}")
        head = "\n".join(lines).encode() + b"\n" + msg + b"\n"
        refs = [p if isinstance(p, str) else f":{p}" for p in parents]
        if refs:
            head += f"from {refs[0]}\n".encode() + b"".join(
                f"merge {r}\n".encode() for r in refs[1:]
            )
        head += b"".join(f"M 100644 :{blob} {path}\n".encode() for path, blob in files)
        self.out(head + b"\n")
        return self.mark


@dataclass
class Special:
    """The benchmark patchset's PRs, and the file each one edits."""

    number: int
    how: str
    path: str
    lines: list[bytes] = field(default_factory=list)


def _edit(rng: random.Random, special: Special) -> bytes:
    """Replace 6 lines in the middle of the PR's file: a small, realistic diff."""
    at = len(special.lines) // 2
    special.lines[at : at + 6] = [line + b"\n" for line in _text(rng, 300).split(b"\n")[:6]]
    return b"".join(special.lines)


def build_upstream(path: Path) -> None:
    """The synthetic upstream, bare, with every ref GitHub would have."""
    rng = random.Random(10)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--active-branches=50"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    s = Stream(proc.stdin.write, EPOCH)
    paths = _paths()
    specials = {
        n: Special(n, how, SPECIAL_PATH.format(i))
        for i, (n, (_, how)) in enumerate(SPECIAL.items())
    }
    files = [(p, s.blob(_text(rng, FILE_BYTES))) for p in paths]
    for sp in specials.values():
        sp.lines = _text(rng, 30_000).splitlines(keepends=True)
        files.append((sp.path, s.blob(b"".join(sp.lines))))
    fp = [s.commit("refs/heads/main", "Initial import", [], files)]
    at_depth = {FIRST_PARENT - 1 - d: n for n, (d, how) in SPECIAL.items() if how != "open"}
    squash_heads: list[tuple[int, int, int, tuple[str, int]]] = []  # (pr, parent, .., file)
    number = 20_000
    for i in range(1, FIRST_PARENT):
        number += 1
        if i in at_depth:
            sp = specials[at_depth[i]]
            change = (sp.path, s.blob(_edit(rng, sp)))
            if sp.how == "merge":
                head = s.commit(
                    f"refs/pull/{sp.number}/head", f"Fix {sp.number}", [fp[-1]], [change]
                )
                fp.append(
                    s.commit(
                        "refs/heads/main",
                        f"Merge pull request #{sp.number} from dev/fix-{sp.number}",
                        [fp[-1], head],
                        [change],
                    )
                )
                continue
            s.commit(f"refs/pull/{sp.number}/head", f"Fix {sp.number}", [fp[-1]], [change])
            fp.append(
                s.commit("refs/heads/main", f"Fix {sp.number} (#{sp.number})", [fp[-1]], [change])
            )
            continue
        if i % MERGE_EVERY == 0:
            side, changes, parent = [], [], fp[-1]
            for k in range(SIDE_LENGTH):
                change = (rng.choice(paths), s.blob(_text(rng, CHANGE_BYTES)))
                changes.append(change)
                parent = s.commit(
                    f"refs/pull/{number}/head", f"side {number}.{k}", [parent], [change]
                )
                side.append(parent)
            message = f"Merge pull request #{number} from dev/topic-{number}"
            fp.append(s.commit("refs/heads/main", message, [fp[-1], side[-1]], changes))
            continue
        change = (rng.choice(paths), s.blob(_text(rng, CHANGE_BYTES)))
        fp.append(
            s.commit("refs/heads/main", f"area: change {number} (#{number})", [fp[-1]], [change])
        )
        squash_heads.append((number, fp[-2], 0, change))
    # refs/pull/N/head for the newest squash merges: the PR's commit, same tree.
    for pr, parent, _, change in squash_heads[-MERGED_HEADS:]:
        s.commit(f"refs/pull/{pr}/head", f"area: change {pr}", [parent], [change])
    # Open PRs (the benchmark's one among them): a head off a recent commit and a merge ref.
    opened = [specials[n] for n, (_, how) in SPECIAL.items() if how == "open"]
    for k in range(OPEN_PRS):
        pr = opened[k].number if k < len(opened) else 40_000 + k
        base = fp[-1 - rng.randrange(1, 200)]
        if k < len(opened):
            change = (opened[k].path, s.blob(_edit(rng, opened[k])))
        else:
            change = (rng.choice(paths), s.blob(_text(rng, 3_000)))
        head = s.commit(f"refs/pull/{pr}/head", f"Open fix {pr}", [base], [change])
        s.commit(f"refs/pull/{pr}/merge", f"Merge {pr} into main", [fp[-1], head], [change])
    for b in range(BRANCHES):
        parent = fp[rng.randrange(len(fp) // 2, len(fp))]
        for k in range(rng.randrange(5, 26)):
            change = (rng.choice(paths), s.blob(_text(rng, CHANGE_BYTES)))
            parent = s.commit(
                f"refs/heads/release/v{b:03d}", f"release {b}.{k}", [parent], [change]
            )
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")


def add_commits(repo: Path, count: int) -> None:
    """`count` new squash merges on main (new blobs), as a night upstream brings."""
    rng = random.Random(time.time_ns())
    tip = _git(repo, "rev-parse", "refs/heads/main")
    stamp = int(_git(repo, "log", "-1", "--format=%ct", tip))
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    s = Stream(proc.stdin.write, stamp)
    parent: int | str = tip
    paths = _paths()
    for k in range(count):
        change = (rng.choice(paths), s.blob(_text(rng, CHANGE_BYTES)))
        parent = s.commit("refs/heads/main", f"area: night {k} (#{80_000 + k})", [parent], [change])
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


# --- the wire ---------------------------------------------------------------------------------


class CountingProxy:
    """127.0.0.1 TCP proxy that counts bytes each way (a thread per direction)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.down = 0
        self.up = 0
        self._lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.down = self.up = 0

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self._lock:
                    if down:
                        self.down += len(data)
                    else:
                        self.up += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("git daemon did not start")


# --- the contenders ---------------------------------------------------------------------------


@dataclass
class Figures:
    down: float = 0.0  # MB
    wall: float = 0.0  # s
    disk: float = 0.0  # MB


class Contender:
    name = ""

    def __init__(self, root: Path, url: str, pulls: Sequence[int]) -> None:
        self.root, self.url, self.pulls = root, url, list(pulls)

    def run(self, cold: bool) -> None:
        raise NotImplementedError

    def disk(self) -> float:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) / 1e6


class Patchkeeper(Contender):
    name = "patchkeeper (this branch)"

    def run(self, cold: bool) -> None:
        from patchkeeper.config.models import Patch, Upstream
        from patchkeeper.upstream.git_resolver import GitResolver
        from patchkeeper.upstream.mirror import GitMirror

        resolver = GitResolver(
            Upstream(git=self.url, branch="main"),
            GitMirror(self.url, self.root, warn=lambda m: print(f"  warning: {m}")),
        )
        patches = [Patch(pr=n, why="benchmark") for n in self.pulls]
        resolver.prepare(patches)
        for patch in patches:
            change = resolver.resolve("bench", patch)
            assert change.diff.count("\n+") >= 6, f"PR #{patch.pr}: empty diff"


class PreviousMirror(Contender):
    name = "previous mirror (all branches)"

    def run(self, cold: bool) -> None:
        repo = self.root / "m.git"
        if cold:
            subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        wanted = [f"refs/pull/{n}/{k}" for n in self.pulls for k in ("head", "merge")]
        listed = _git(repo, "ls-remote", self.url, *wanted)
        have = [line.split("\t")[1] for line in listed.splitlines()]
        _git(
            repo,
            "fetch",
            "-q",
            "--prune",
            "--no-tags",
            self.url,
            "+refs/heads/*:refs/heads/*",
            *(f"+{r}:{r}" for r in have),
        )
        for n in self.pulls:
            _git(repo, "diff", f"refs/pull/{n}/head^", f"refs/pull/{n}/head")


class CloneMirror(Contender):
    name = "git clone --mirror"

    def run(self, cold: bool) -> None:
        repo = self.root / "m.git"
        if cold:
            subprocess.run(["git", "clone", "-q", "--mirror", self.url, str(repo)], check=True)
        else:
            _git(repo, "fetch", "-q", "--prune", "origin")


class Bound(Contender):
    name = "bound: blob:none --single-branch + PR refs + diff blobs"

    def run(self, cold: bool) -> None:
        repo = self.root / "m.git"
        specs = [f"+refs/pull/{n}/*:refs/pull/{n}/*" for n in self.pulls]
        if cold:
            subprocess.run(
                [
                    "git",
                    "clone",
                    "-q",
                    "--bare",
                    "--filter=blob:none",
                    "--single-branch",
                    "--branch",
                    "main",
                    self.url,
                    str(repo),
                ],
                check=True,
            )
            _git(repo, "fetch", "-q", "origin", *specs)
        else:
            _git(repo, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main", *specs)
        for n in self.pulls:
            _git(repo, "diff", f"refs/pull/{n}/head^", f"refs/pull/{n}/head")


# --- the run ----------------------------------------------------------------------------------


def measure(proxy: CountingProxy, contender: Contender, cold: bool) -> Figures:
    proxy.reset()
    start = time.perf_counter()
    contender.run(cold)
    wall = time.perf_counter() - start
    time.sleep(0.2)  # let the proxy threads count the last bytes
    return Figures(proxy.down / 1e6, wall, contender.disk())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="where the upstream is kept")
    args = parser.parse_args(argv)
    base = args.cache / "upstream.git"
    if not (base / "HEAD").exists():
        started = time.perf_counter()
        shutil.rmtree(base, ignore_errors=True)
        build_upstream(base.with_suffix(".tmp"))
        base.with_suffix(".tmp").rename(base)
        print(f"built the upstream in {time.perf_counter() - started:.0f} s")
    return run(base)


def run(base: Path) -> int:
    pack = sum(p.stat().st_size for p in (base / "objects" / "pack").glob("*.pack")) / 1e6
    fp = int(_git(base, "rev-list", "--count", "--first-parent", "main"))
    total = int(_git(base, "rev-list", "--count", "--all"))
    refs = _git(base, "for-each-ref", "--format=%(refname)").splitlines()
    pulls = sum(r.startswith("refs/pull/") for r in refs)
    heads = sum(r.startswith("refs/heads/") for r in refs)
    print(
        f"upstream: {fp:,} first-parent commits ({total:,} in all), {heads} branches, "
        f"{pulls:,} PR refs, a {pack:,.0f} MB pack"
    )
    with tempfile.TemporaryDirectory(prefix="pk-upstream-scale-") as tmp:
        work = Path(tmp)
        served = work / "served" / "upstream.git"
        subprocess.run(
            ["git", "clone", "-q", "--mirror", "--shared", str(base), str(served)], check=True
        )
        _git(served, "config", "uploadpack.allowFilter", "true")
        port = _free_port()
        daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={served.parent}",
                "--listen=127.0.0.1",
                f"--port={port}",
                str(served.parent),
            ],
            stderr=subprocess.DEVNULL,  # upload-pack's "hung up" after every ls-remote
        )
        try:
            _wait_listening(port)
            proxy = CountingProxy(port)
            url = f"git://127.0.0.1:{proxy.port}/upstream.git"
            kinds = (Patchkeeper, PreviousMirror, CloneMirror, Bound)
            contenders = [k(work / f"c{i}", url, list(SPECIAL)) for i, k in enumerate(kinds)]
            for c in contenders:
                c.root.mkdir()
            results: dict[str, list[Figures]] = {c.name: [] for c in contenders}
            for phase in ("cold", "warm", "after"):
                if phase == "after":
                    add_commits(served, NEW_COMMITS)
                for c in contenders:
                    results[c.name].append(measure(proxy, c, phase == "cold"))
        finally:
            daemon.terminate()
            daemon.wait()
    return report(results)


def report(results: dict[str, list[Figures]]) -> int:
    print()
    print(f"| fetch | cold: MB down / wall | warm | after {NEW_COMMITS} new commits | on disk |")
    print("|---|---|---|---|---|")
    for name, (cold, warm, after) in results.items():
        print(
            f"| {name} | {cold.down:.2f} MB / {cold.wall:.1f} s | {warm.down:.2f} MB / "
            f"{warm.wall:.1f} s | {after.down:.2f} MB / {after.wall:.1f} s | {after.disk:.0f} MB |"
        )
    ours = results[Patchkeeper.name]
    bound = results[Bound.name]
    mirror = results[CloneMirror.name]
    print()
    ok = True
    for label, value, limit in (
        ("cold bytes vs the bound", ours[0].down / bound[0].down, TARGET_OF_BOUND),
        ("cold bytes vs clone --mirror", ours[0].down / mirror[0].down, TARGET_OF_MIRROR),
    ):
        verdict = "ok" if value <= limit else "TARGET MISSED"
        ok &= value <= limit
        print(f"{label:32} {value:6.3f} (target <= {limit})  {verdict}")
    print(f"{'warm bytes (one negotiation)':32} {ours[1].down * 1e3:6.1f} kB")
    print(f"{'after 50: ours vs the bound':32} {ours[2].down / max(bound[2].down, 1e-9):6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
