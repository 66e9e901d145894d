"""Benchmark: porting real SGLang drift, patchkeeper side by side with git and GNU patch.

Real code, real drift: every SGLang release on PyPI holds the package's source. This
script downloads several releases' wheels (cached), commits the often-changed source files
of each release to a scratch git repository (one commit per release, on `main`), and treats
every release-to-release change of a file as "the PR" (base: the file at release N, result:
the file at release N+1, diff: `git diff` as the resolver makes it). Two kinds of cases:

- backport: the image holds the file 1-4 releases *older* than the PR's base;
- contained: the image holds the file 1-3 releases *newer* than the PR's result (it has
  the change, possibly rewritten or moved since).

The oracle is `git merge-file` of image / base / result. Every tool ports every case:
patchkeeper's porting stage (`patching.port`, blobs read by `GitResolver.files_at` from a
mirror of the scratch repository), `git apply -3` (with the blobs at hand) and GNU
`patch --fuzz=2 --forward` (SGLang's own patch workflow). Per kind, each tool's outcome:

- backport: correct (the oracle's bytes), missed (refused what the oracle merges), true
  conflict (refused what the oracle refuses), wrong (exit 0 with other bytes: a silent
  misapply);
- contained: correct (left the image's file as it is, or refused nothing), conflict
  (refused), wrong (exit 0 and changed the image's file: a re-applied change).

A handful of backport cases also run through the real CLI (`patchkeeper sync
--image-source layout`): an upstream with each case as an open PR, an OCI layout image
holding the older release at its source root (with its `.git`), and the overlay's bytes
checked against the oracle. No Docker needed.

Targets (reported, "TARGET MISSED" on a miss; the exit status is non-zero only when
patchkeeper and the oracle disagree on any case, refused vs merged or other bytes, or
the CLI disagrees with the library): on backports, every case the oracle merges cleanly
ported and 0 silent misapplies; on contained cases, no more misapplies than the oracle;
median time per case at most 2x git merge-file's.

By default a fixed sample of 700 cases keeps a run to a few minutes on two shared
cores (`--sample 0`: all of them, ~2,500 with the defaults).

Run: .venv/bin/python benchmarks/real_drift.py [--cache DIR] [--releases 8-23]
                                               [--files 28] [--sample 700] [--cli 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from platformdirs import user_cache_dir
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from patchkeeper.cli import app
from patchkeeper.config.models import Patch, Upstream
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import ParsedChange, PatchState, port
from patchkeeper.upstream.git_resolver import DIFF_FLAGS, GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState, UpstreamChange
from tests.oci import Image, layer, tree, write_oci_layout

ROOT = PurePosixPath("/sgl-workspace/sglang")
EXACT = "patchkeeper, local diff"  # the same diff with its blobs unknown: exact matching
TOOLS = ("patchkeeper", EXACT, "git merge-file", "git apply -3", "patch --fuzz=2")
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "@1700000000 +0000",
    "GIT_COMMITTER_DATE": "@1700000000 +0000",
}
# Files the product patches: always in the set when the releases have them.
PINNED = (
    "python/sglang/srt/entrypoints/openai/serving_chat.py",
    "python/sglang/srt/entrypoints/http_server.py",
    "python/sglang/srt/server_args.py",
)


def git(cwd: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, input=stdin, capture_output=True, check=False
    )
    if check and done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


# --- the releases -------------------------------------------------------------------------


def wheels(cache: Path, versions: Sequence[str]) -> dict[str, Path]:
    """The sglang wheel of each version, downloaded once into `cache`."""
    found = {}
    for version in versions:
        matches = sorted((cache / "wheels").glob(f"sglang-{version}-*.whl"))
        if not matches:
            print(f"downloading sglang=={version} ...", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary=:all:", f"sglang=={version}", "-d", str(cache / "wheels")],
                check=True,
            )  # fmt: skip
            matches = sorted((cache / "wheels").glob(f"sglang-{version}-*.whl"))
        found[version] = matches[0]
    return found


def read_release(wheel: Path) -> dict[str, bytes]:
    """The package's Python sources, at their repository paths (python/sglang/...)."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            f"python/{name}": archive.read(name)
            for name in archive.namelist()
            if name.startswith("sglang/") and name.endswith(".py")
        }


def often_changed(releases: list[dict[str, bytes]], count: int) -> list[str]:
    """The `count` UTF-8 files present in every release that changed most often."""
    common = set.intersection(*(set(r) for r in releases))
    changes: Counter[str] = Counter()
    for older, newer in itertools.pairwise(releases):
        changes.update(p for p in common if older[p] != newer[p])
    ranked = [p for p in sorted(changes, key=lambda p: (-changes[p], p)) if _utf8(releases, p)]
    chosen = [p for p in PINNED if p in common] + [p for p in ranked if p not in PINNED]
    return chosen[:count]


def _utf8(releases: list[dict[str, bytes]], path: str) -> bool:
    try:
        for release in releases:
            release[path].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_upstream(work: Path, releases: list[dict[str, bytes]], files: list[str]) -> list[str]:
    """One commit per release on `main` holding `files`; their ids, oldest first."""
    key = hashlib.sha256(
        json.dumps(
            [files, [[hashlib.sha256(r[p]).hexdigest() for p in files] for r in releases]]
        ).encode()
    ).hexdigest()[:16]
    marker = work / ".bench-key"
    if marker.exists() and marker.read_text() == key:
        log = git(work, "log", "--reverse", "--format=%H", "main").decode().split()
        if len(log) == len(releases):
            return log
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "uploadpack.allowFilter", "true")
    commits = []
    for number, release in enumerate(releases):
        for path in files:
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(release[path])
        git(work, "add", "-A")
        git(work, "commit", "-q", "--allow-empty", "-m", f"release {number}")
        commits.append(git(work, "rev-parse", "HEAD").decode().strip())
    (work / ".bench-key").write_text(key)
    git(work, "update-server-info")
    return commits


# --- the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str  # backport | contained
    path: str
    pr: int  # index of the PR's base release
    image: int  # index of the image's release
    ours: bytes
    base: bytes
    theirs: bytes
    diff: str


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, seconds: float, case: Case) -> None:
        self.outcomes[outcome] += 1
        self.seconds.append(seconds)
        examples = self.examples.setdefault(outcome, [])
        if len(examples) < 3:
            examples.append(f"{case.path} PR {case.pr}->{case.pr + 1} image {case.image}")


def cases(
    work: Path, commits: list[str], releases: list[dict[str, bytes]], files: list[str],
    back: int, ahead: int,
) -> list[Case]:  # fmt: skip
    found = []
    for path in files:
        for pr in range(len(releases) - 1):
            base, theirs = releases[pr][path], releases[pr + 1][path]
            if base == theirs:
                continue
            diff = git(work, "diff", *DIFF_FLAGS, commits[pr], commits[pr + 1], "--", path)
            text = diff.decode()
            for k in range(1, back + 1):
                if pr - k >= 0 and releases[pr - k][path] != base:
                    found.append(
                        Case("backport", path, pr, pr - k, releases[pr - k][path], base, theirs,
                             text)
                    )  # fmt: skip
            for k in range(1, ahead + 1):
                image = pr + 1 + k
                if image < len(releases) and releases[image][path] != theirs:
                    found.append(
                        Case("contained", path, pr, image, releases[image][path], base, theirs,
                             text)
                    )  # fmt: skip
    return found


# --- the tools ----------------------------------------------------------------------------

Result = tuple[bytes | None, float]  # (the ported bytes, or None when refused; seconds)


def run_merge_file(case: Case, tmp: Path) -> Result:
    start = time.perf_counter()
    for name, data in (("ours", case.ours), ("base", case.base), ("theirs", case.theirs)):
        (tmp / name).write_bytes(data)
    done = subprocess.run(
        ["git", "merge-file", "-p", "ours", "base", "theirs"], cwd=tmp, capture_output=True
    )
    seconds = time.perf_counter() - start
    return (done.stdout if done.returncode == 0 else None), seconds


def run_patchkeeper(
    case: Case, bases: dict[PurePosixPath, bytes | None] | None, commit: str
) -> Result:
    """The porting stage on one case; `bases` None ports it as a local diff (exact)."""
    if bases is None:
        patch = Patch(diff=Path("bench.diff"), why="bench")
        change = UpstreamChange("bench", patch, PrState.LOCAL, case.diff)
        parsed = ParsedChange.of(change, ROOT)
    else:
        patch = Patch(pr=1, why="bench")
        change = UpstreamChange("bench", patch, PrState.MERGED, case.diff, base=commit)
        parsed = ParsedChange.of(change, ROOT).with_bases(bases)
    start = time.perf_counter()
    result = port([parsed], {ROOT / case.path: case.ours})
    seconds = time.perf_counter() - start
    [outcome] = result.outcomes
    if outcome.state is PatchState.CONFLICT:
        return None, seconds
    if bases is not None:
        HUNKS.update(h.status for f in outcome.files for h in f.hunks)
    return result.current[ROOT / case.path], seconds


HUNKS: Counter[HunkStatus] = Counter()


def run_git_apply(case: Case, repo: Path) -> Result:
    """`git apply -3` in a scratch repository that borrows the upstream's objects."""
    start = time.perf_counter()
    git(repo, "read-tree", "--empty")
    target = repo / case.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(case.ours)
    git(repo, "add", "-f", case.path)
    done = subprocess.run(
        ["git", "apply", "-3", "--whitespace=nowarn", "-"],
        cwd=repo, env=GIT_ENV, input=case.diff.encode(), capture_output=True,
    )  # fmt: skip
    out = target.read_bytes() if done.returncode == 0 else None
    return out, time.perf_counter() - start


def run_patch(case: Case, tmp: Path) -> Result:
    start = time.perf_counter()
    (tmp / "ours").write_bytes(case.ours)
    out = tmp / "patched"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        ["patch", "--fuzz=2", "--forward", "--batch", "-s", "--no-backup-if-mismatch",
         "-r", "-", "-o", str(out), str(tmp / "ours")],
        input=case.diff.encode(), capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return (out.read_bytes() if done.returncode == 0 and out.exists() else None), seconds


def judge(case: Case, oracle: bytes | None, got: bytes | None) -> str:
    if case.kind == "contained":
        if got is None:
            return "conflict"
        return "correct" if got == case.ours else "wrong"
    if got is None:
        return "true conflict" if oracle is None else "missed"
    return "correct" if got == oracle else "wrong"


# --- through the CLI ----------------------------------------------------------------------

RECIPE = """\
image: bench/sglang
tags: '^nightly-(?P<date>\\d{{8}})-(?P<sha>[0-9a-f]{{8}})$'
patchsets: [bench.yaml]
service:
  name: sglang
  port: 30000
  model: {{path: /models/tiny, host_path: {model}}}
  gpus: null
"""
PATCHSET = """\
upstream: {{git: '{url}', branch: main}}
source_root: {root}
patches:
  - pr: {pr}
    why: a real release-to-release change of {path}
"""


def through_cli(
    chosen: list[Case], work: Path, commits: list[str], releases: list[dict[str, bytes]],
    files: list[str], tmp: Path, oracle: Callable[[Case], bytes | None],
) -> list[tuple[Case, str]]:  # fmt: skip
    """Each case as an open PR (a branch from its base release changing just its file),
    synced onto an OCI layout image of its image release; the overlay's bytes judged."""
    tmp.mkdir(parents=True, exist_ok=True)
    upstream = tmp / "upstream.git"
    git(tmp, "clone", "-q", "--bare", str(work), str(upstream))
    layout = tmp / "layout"
    verdicts = []
    runner = CliRunner()
    for number, case in enumerate(chosen, start=1):
        # The PR changes only this file: its tree is the base's with this one blob replaced.
        index = tmp / f"index-{number}"
        env = {**GIT_ENV, "GIT_INDEX_FILE": str(index)}
        subprocess.run(["git", "read-tree", commits[case.pr]], cwd=work, env=env, check=True)
        blob = git(work, "rev-parse", f"{commits[case.pr + 1]}:{case.path}").decode().strip()
        subprocess.run(
            ["git", "update-index", "--cacheinfo", f"100644,{blob},{case.path}"],
            cwd=work, env=env, check=True,
        )  # fmt: skip
        tree_id = (
            subprocess.run(
                ["git", "write-tree"], cwd=work, env=env, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        head = git(work, "commit-tree", tree_id, "-p", commits[case.pr], "-m", f"PR {number}")
        git(work, "push", "-q", str(upstream), f"{head.decode().strip()}:refs/pull/{number}/head")
        image_commit = commits[case.image]
        files_in_image: dict[str, bytes | str] = {
            f"{str(ROOT).lstrip('/')}/{p}": releases[case.image][p] for p in files
        }
        files_in_image[f"{str(ROOT).lstrip('/')}/.git/HEAD"] = image_commit + "\n"
        tag = f"nightly-2026{number:04d}-{image_commit[:8]}"
        write_oci_layout(layout, Image(layers=[layer(tree(files_in_image))]), tag=tag)
        (tmp / "bench.yaml").write_text(
            PATCHSET.format(url=f"file://{upstream}", root=ROOT, pr=number, path=case.path)
        )
        (tmp / "model").mkdir(exist_ok=True)
        (tmp / "recipe.yaml").write_text(RECIPE.format(model=tmp / "model"))
        result = runner.invoke(
            app,
            ["sync", "--recipe", str(tmp / "recipe.yaml"), "--image", f"bench/sglang:{tag}",
             "--image-source", "layout", "--layout", str(layout), "--out", str(tmp / "out"),
             "--json"],
        )  # fmt: skip
        doc = json.loads(result.stdout)
        got = None
        if result.exit_code == 0:
            overlay = Path(doc["overlay"]) / "rootfs" / str(ROOT / case.path).lstrip("/")
            got = overlay.read_bytes() if overlay.exists() else case.ours
        verdicts.append((case, judge(case, oracle(case), got)))
    return verdicts


# --- the run ------------------------------------------------------------------------------


def table(title: str, rows: dict[str, Tally], columns: Sequence[str]) -> None:
    print(f"\n{title}")
    width = max(len(t) for t in TOOLS)
    print(f"{'tool':<{width}}  " + "  ".join(f"{c:>13}" for c in columns) + "  median ms")
    for tool in TOOLS:
        tally = rows[tool]
        cells = "  ".join(f"{tally.outcomes[c]:>13}" for c in columns)
        median = statistics.median(tally.seconds) * 1000 if tally.seconds else 0.0
        print(f"{tool:<{width}}  {cells}  {median:9.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(user_cache_dir("patchkeeper-bench")))
    parser.add_argument("--releases", default="8-23", help="0.5.X minor range, e.g. 8-23")
    parser.add_argument("--files", type=int, default=28, help="often-changed files to use")
    parser.add_argument("--back", type=int, default=4, help="image up to N releases older")
    parser.add_argument("--ahead", type=int, default=3, help="image up to N releases newer")
    parser.add_argument("--sample", type=int, default=700, help="at most N cases (0: all)")
    parser.add_argument("--cli", type=int, default=5, help="backport cases through the CLI")
    args = parser.parse_args()
    low, high = (int(x) for x in args.releases.split("-"))
    versions = [f"0.5.{minor}" for minor in range(low, high + 1)]
    args.cache.mkdir(parents=True, exist_ok=True)
    releases = [read_release(w) for w in wheels(args.cache, versions).values()]
    files = often_changed(releases, args.files)
    work = args.cache / "upstream"
    commits = build_upstream(work, releases, files)
    all_cases = cases(work, commits, releases, files, args.back, args.ahead)
    total = len(all_cases)
    if args.sample and total > args.sample:  # every k-th case: the same sample every run
        all_cases = all_cases[:: -(-total // args.sample)]
    print(f"{len(versions)} releases (sglang {versions[0]} .. {versions[-1]}), {len(files)} "
          f"files, {len(all_cases)} of {total} cases", flush=True)  # fmt: skip

    resolver = GitResolver(Upstream(git=f"file://{work}"), GitMirror(f"file://{work}",
                           args.cache / "mirrors"))  # fmt: skip
    resolver.prepare([])
    bases: dict[tuple[str, int], dict[PurePosixPath, bytes | None]] = {}
    tallies = {kind: {tool: Tally() for tool in TOOLS} for kind in ("backport", "contained")}
    disagreements = []
    oracle_bytes: dict[int, bytes | None] = {}
    with tempfile.TemporaryDirectory(prefix="real-drift-") as scratch:
        tmp = Path(scratch)
        apply_repo = tmp / "apply"
        git(tmp, "init", "-q", str(apply_repo))
        (apply_repo / ".git/objects/info/alternates").write_text(f"{work}/.git/objects\n")
        for number, case in enumerate(all_cases):
            key = (case.path, case.pr)
            if key not in bases:
                bases[key] = resolver.files_at(commits[case.pr], [PurePosixPath(case.path)])
            oracle, oracle_s = run_merge_file(case, tmp)
            oracle_bytes[id(case)] = oracle
            ours, ours_s = run_patchkeeper(case, bases[key], commits[case.pr])
            exact, exact_s = run_patchkeeper(case, None, commits[case.pr])
            applied, applied_s = run_git_apply(case, apply_repo)
            patched, patched_s = run_patch(case, tmp)
            row = tallies[case.kind]
            for tool, got, seconds in (
                ("patchkeeper", ours, ours_s),
                (EXACT, exact, exact_s),
                ("git merge-file", oracle, oracle_s),
                ("git apply -3", applied, applied_s),
                ("patch --fuzz=2", patched, patched_s),
            ):
                row[tool].add(judge(case, oracle, got), seconds, case)
            if (oracle is None) != (ours is None) or (oracle is not None and ours != oracle):
                disagreements.append(case)
            if number % 200 == 199:
                print(f"  {number + 1} cases ...", flush=True)

        table(f"backport cases ({sum(tallies['backport']['git merge-file'].outcomes.values())}:"
              " image 1-4 releases older than the PR's base)", tallies["backport"],
              ("correct", "missed", "true conflict", "wrong"))  # fmt: skip
        table(f"contained cases ({sum(tallies['contained']['git merge-file'].outcomes.values())}"
              ": image 1-3 releases newer than the PR's result)", tallies["contained"],
              ("correct", "conflict", "wrong"))  # fmt: skip
        print("\npatchkeeper hunks: " + ", ".join(f"{s.value} {n}" for s, n in HUNKS.items()))
        for kind in tallies:
            for tool in TOOLS:
                for outcome, examples in tallies[kind][tool].examples.items():
                    if outcome in ("wrong", "missed"):
                        print(f"  {kind} {tool} {outcome}: " + "; ".join(examples))

        clean_drift = [
            c for c in all_cases if c.kind == "backport" and oracle_bytes[id(c)] is not None
        ]
        clean_drift.sort(key=lambda c: (c.path not in PINNED, c.image - c.pr))
        picked: list[Case] = []
        for case in clean_drift:  # different files first
            if len(picked) < args.cli and case.path not in {p.path for p in picked}:
                picked.append(case)
        verdicts = through_cli(picked, work, commits, releases, files, tmp / "cli",
                               lambda c: oracle_bytes[id(c)]) if picked else []  # fmt: skip
    cli = Counter(v for _, v in verdicts)
    print(f"\nthrough the CLI (sync --image-source layout): {len(verdicts)} backport cases: "
          + ", ".join(f"{k} {n}" for k, n in sorted(cli.items())))  # fmt: skip

    failures = 0
    back = tallies["backport"]
    pk, oracle_row = back["patchkeeper"], back["git merge-file"]
    checks = [
        ("backports: every clean oracle merge ported",
         pk.outcomes["correct"] == oracle_row.outcomes["correct"]),
        ("backports: 0 silent misapplies", pk.outcomes["wrong"] == 0),
        ("contained: no more misapplies than git merge-file",
         tallies["contained"]["patchkeeper"].outcomes["wrong"]
         <= tallies["contained"]["git merge-file"].outcomes["wrong"]),
        ("median time per case at most 2x git merge-file's",
         statistics.median(pk.seconds + tallies["contained"]["patchkeeper"].seconds)
         <= 2 * statistics.median(oracle_row.seconds
                                  + tallies["contained"]["git merge-file"].seconds)),
    ]  # fmt: skip
    print()
    for label, ok in checks:
        print(f"{'ok' if ok else 'TARGET MISSED'}: {label}")
    if disagreements:
        print(f"FAIL: patchkeeper and git merge-file disagree in {len(disagreements)} cases: "
              + "; ".join(f"{c.kind} {c.path} PR {c.pr} image {c.image}"
                          for c in disagreements[:5]))  # fmt: skip
        failures += 1
    if cli["correct"] != len(verdicts):
        print("FAIL: the CLI did not port every case the library ports")
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
