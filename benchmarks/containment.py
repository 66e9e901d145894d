"""Benchmark: which PR merge commits does each nightly tag contain?

`patchkeeper sync` must answer, for every (nightly tag, PR merge commit) pair, whether
the PR is an ancestor of the tag. The naive answer is one `git merge-base --is-ancestor`
subprocess per pair: 100 tags x 50 PRs = 5,000 processes. `GitResolver.contained` instead
runs a single `git rev-list --topo-order --reverse --parents <tags...>` and answers every
pair with one bitmask pass (`patchkeeper.containment.ancestry_masks`).

This script builds a synthetic upstream with `git fast-import` (30,000 commits on `main`
by default, every 50th first-parent commit merging a 2-commit side branch), fetches it into
a `GitMirror` over file://, and times both approaches side by side on the same mirror. It
exits non-zero if the two disagree on any pair; missed performance targets are only
reported ("TARGET MISSED"):

    contained() under 2 s, and at least 20x faster than the per-pair loop.

Run: .venv/bin/python benchmarks/containment.py [--commits N] [--tags N] [--prs N]
                                                [--no-commit-graph]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

MERGE_EVERY = 50  # every 50th first-parent commit merges a side branch
SIDE_LENGTH = 2  # commits on each side branch
LOOP_BUDGET_S = 60.0  # run the full per-pair loop when it is expected to fit in this
SAMPLE_PAIRS = 200  # pairs timed first to estimate the full loop
TARGET_SECONDS = 2.0
TARGET_SPEEDUP = 20.0
EPOCH = 1_600_000_000

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class History:
    """Commit ids of the synthetic upstream, oldest first."""

    main: list[str]  # first-parent chain of main
    side: dict[int, list[str]]  # first-parent index of a merge -> its side-branch commits

    @property
    def total(self) -> int:
        return len(self.main) + sum(len(s) for s in self.side.values())


# --- building the upstream ----------------------------------------------------------------


def _commit(mark: int, ref: str, kind: str, parents: Sequence[int]) -> str:
    """One fast-import commit that rewrites a one-line file (main.txt or side.txt)."""
    path = "side.txt" if kind == "side" else "main.txt"
    message, body = f"{kind} {mark}", f"{mark}\n"
    lines = [
        f"commit {ref}",
        f"mark :{mark}",
        f"committer Bench <bench@example.com> {EPOCH + mark} +0000",
        f"data {len(message)}",
        message,
    ]
    lines += [f"from :{parents[0]}"] if parents else []
    lines += [f"merge :{p}" for p in parents[1:]]
    lines += [f"M 100644 inline {path}", f"data {len(body)}", body]
    return "\n".join(lines)


def fast_import_stream(total: int) -> Iterator[str]:
    """Yield a fast-import stream with `total` commits reachable from refs/heads/main."""
    for mark, kind, parents in plan_marks(total):
        ref = "refs/heads/side" if kind == "side" else "refs/heads/main"
        yield _commit(mark, ref, kind, parents)


def plan_marks(total: int) -> Iterator[tuple[int, str, tuple[int, ...]]]:
    """(mark, kind, explicit parents) for each commit; kind is main, side or merge.

    Marks are 1, 2, ... in stream order; fast-import chains a commit without explicit
    parents onto its branch's previous commit. Both the stream and `build_upstream`
    replay this plan, so they cannot disagree.
    """
    mark = 0
    main_tip = 0
    first_parent_count = 0
    while mark < total:
        first_parent_count += 1
        room_for_merge = total - mark >= SIDE_LENGTH + 1
        if first_parent_count % MERGE_EVERY == 0 and main_tip and room_for_merge:
            for i in range(SIDE_LENGTH):
                mark += 1
                yield mark, "side", ((main_tip,) if i == 0 else ())
            side_tip = mark
            mark += 1
            yield mark, "merge", (main_tip, side_tip)
        else:
            mark += 1
            yield mark, "main", ()
        main_tip = mark


def build_upstream(path: Path, total: int) -> History:
    """Create a bare repository at `path` holding the synthetic history."""
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    marks_file = path.parent / "marks"
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", f"--export-marks={marks_file}"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    chunk: list[str] = []
    for text in fast_import_stream(total):
        chunk.append(text)
        if len(chunk) >= 1000:
            proc.stdin.write("".join(chunk).encode())
            chunk.clear()
    proc.stdin.write("".join(chunk).encode())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    git("-C", str(path), "update-ref", "-d", "refs/heads/side")
    git("-C", str(path), "config", "uploadpack.allowFilter", "true")  # as GitHub serves

    sha: dict[int, str] = {}
    for line in marks_file.read_text().splitlines():  # ":<mark> <sha>"
        name, commit = line.split()
        sha[int(name.removeprefix(":"))] = commit
    history = History(main=[], side={})
    pending_side: list[str] = []
    for mark, kind, _ in plan_marks(total):
        if kind == "side":
            pending_side.append(sha[mark])
            continue
        if kind == "merge":
            history.side[len(history.main)] = pending_side
            pending_side = []
        history.main.append(sha[mark])
    return history


# --- choosing tags and PRs ----------------------------------------------------------------


def spread(start: int, stop: int, count: int) -> list[int]:
    """`count` indices evenly spread over [start, stop)."""
    if count <= 0 or stop <= start:
        return []
    return [start + (i * (stop - start)) // count for i in range(count)]


def choose(history: History, tags: int, prs: int) -> tuple[list[str], list[str]]:
    """Nightly tags evenly over the last two thirds of main (ending a little before the
    tip); PRs: 10% before the first tag, 10% after the last, the rest in between, every
    10th PR being a side-branch commit rather than a commit on main."""
    n = len(history.main)
    tag_start, tag_stop = n - (2 * n) // 3, n - max(1, n // 100)
    tag_idx = spread(tag_start, tag_stop, tags)
    first_tag, last_tag = tag_idx[0], tag_idx[-1]

    outside = max(1, prs // 10)
    pr_idx = (
        spread(0, first_tag, outside)
        + spread(first_tag + 1, last_tag, prs - 2 * outside)
        + spread(last_tag + 1, n, outside)
    )
    merges = sorted(history.side)
    pr_shas: list[str] = []
    for k, idx in enumerate(pr_idx):
        later_merge = next((m for m in merges if m >= idx), None)
        if k % 10 == 5 and later_merge is not None:
            pr_shas.append(history.side[later_merge][0])
        else:
            pr_shas.append(history.main[idx])
    return [history.main[i] for i in tag_idx], pr_shas


# --- measuring ----------------------------------------------------------------------------


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True)


def is_ancestor_loop(mirror: Path, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The naive answer: one `merge-base --is-ancestor` process per (pr, tag) pair."""
    found: set[tuple[str, str]] = set()
    for pr, tag in pairs:
        rc = subprocess.run(
            ["git", "-C", str(mirror), "merge-base", "--is-ancestor", pr, tag]
        ).returncode
        if rc == 0:
            found.add((pr, tag))
        elif rc != 1:
            raise RuntimeError(f"git merge-base --is-ancestor {pr} {tag} exited {rc}")
    return found


def timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    """Call fn and return (its result, wall seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=30_000, help="commits on main")
    parser.add_argument("--tags", type=int, default=100, help="nightly tags (tips)")
    parser.add_argument("--prs", type=int, default=50, help="PR merge commits")
    parser.add_argument(
        "--no-commit-graph",
        dest="commit_graph",
        action="store_false",
        help="remove the commit-graph GitMirror.fetch writes, to see what it is worth",
    )
    args = parser.parse_args(argv)
    if args.commits < 3 * MERGE_EVERY or args.tags < 2 or args.prs < 3:
        parser.error(f"need --commits >= {3 * MERGE_EVERY}, --tags >= 2, --prs >= 3")

    with tempfile.TemporaryDirectory(prefix="patchkeeper-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # Hermetic: neither the user's cache nor their git configuration is involved.
        os.environ["PATCHKEEPER_CACHE_DIR"] = str(tmp / "cache")
        os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
        os.environ["GIT_CONFIG_GLOBAL"] = os.devnull
        return run(tmp, args.commits, args.tags, args.prs, args.commit_graph)


def run(tmp: Path, commits: int, n_tags: int, n_prs: int, commit_graph: bool) -> int:
    from patchkeeper.config.models import Upstream
    from patchkeeper.upstream.git_resolver import GitResolver
    from patchkeeper.upstream.mirror import GitMirror

    upstream = tmp / "upstream.git"
    history, build_s = timed(build_upstream, upstream, commits)
    tags, prs = choose(history, n_tags, n_prs)
    url = upstream.as_uri()
    mirror = GitMirror(url, root=tmp / "mirrors")
    _, fetch_s = timed(mirror.fetch, "main", [])
    if not commit_graph:
        shutil.rmtree(mirror.path / "objects" / "info" / "commit-graphs", ignore_errors=True)
        (mirror.path / "objects" / "info" / "commit-graph").unlink(missing_ok=True)
    resolver = GitResolver(Upstream.model_validate({"git": url, "branch": "main"}), mirror)

    contained, contained_s = timed(resolver.contained, prs, tags)

    pairs = [(pr, tag) for tag in tags for pr in prs]
    sample = random.Random(0).sample(pairs, min(SAMPLE_PAIRS, len(pairs)))
    sample_found, sample_s = timed(is_ancestor_loop, mirror.path, sample)
    estimate_s = sample_s * len(pairs) / len(sample)
    if estimate_s < LOOP_BUDGET_S:
        checked = pairs
        found, loop_s = timed(is_ancestor_loop, mirror.path, pairs)
        loop_note = "full loop"
    else:
        checked, found, loop_s = sample, sample_found, estimate_s
        loop_note = f"EXTRAPOLATED from {len(sample)} sampled pairs ({sample_s:.2f} s)"

    wrong = [
        (pr, tag)
        for pr, tag in checked
        if (pr in contained.get(tag, frozenset())) != ((pr, tag) in found)
    ]
    speedup = loop_s / contained_s if contained_s else float("inf")
    tags_per_pr = [sum(pr in contained[tag] for tag in tags) for pr in prs]
    in_all = sum(n == len(tags) for n in tags_per_pr)
    in_none = tags_per_pr.count(0)

    print(f"commits on main        {history.total:>10,}  ({len(history.main):,} first-parent)")
    print(f"nightly tags           {len(tags):>10}")
    print(
        f"PR merge commits       {len(prs):>10}  ({in_all} in every tag, {in_none} in none, "
        f"{len(prs) - in_all - in_none} in some)"
    )
    print(f"pairs                  {len(pairs):>10,}  ({sum(tags_per_pr):,} contained)")
    print(f"build upstream         {build_s:>10.2f} s  (git fast-import)")
    print(f"fetch into mirror      {fetch_s:>10.2f} s  (GitMirror.fetch over file://)")
    print(f"mirror commit-graph    {'yes' if commit_graph else 'no':>10}")
    print(f"(a) contained()        {contained_s:>10.3f} s  (one rev-list + ancestry_masks)")
    print(f"(b) is-ancestor loop   {loop_s:>10.2f} s  ({loop_note})")
    print(f"speedup (b)/(a)        {speedup:>10.1f} x")
    print(f"answers checked        {len(checked):>10,}  pairs, {len(wrong)} mismatched")

    if contained_s >= TARGET_SECONDS:
        print(f"TARGET MISSED: contained() took {contained_s:.3f} s (target < {TARGET_SECONDS} s)")
    if speedup < TARGET_SPEEDUP:
        print(f"TARGET MISSED: speedup {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x)")
    if contained_s < TARGET_SECONDS and speedup >= TARGET_SPEEDUP:
        print(f"targets met: < {TARGET_SECONDS} s and >= {TARGET_SPEEDUP:.0f}x")

    if wrong:
        for pr, tag in wrong[:10]:
            print(f"MISMATCH: pr {pr} tag {tag}: loop says {(pr, tag) in found}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
