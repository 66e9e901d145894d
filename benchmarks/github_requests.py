"""Benchmark: how many GitHub API requests does `patchkeeper sync` spend per PR?

With `github: owner/name` in a patchset, sync asks GitHub's REST API for each PR's title,
state, merge commit, merge time and files. Requests count against a rate limit (60 an hour
anonymously, 5,000 with a token), and a nightly job syncs several recipes, so the resolver
caches: a merged PR never changes and is answered from disk; any other PR is revalidated
with its ETag (If-None-Match), and an unchanged one costs one 304, which GitHub does not
charge against the limit.

This script lays out the embedded demo (its upstream git history and nightly image, in the
Docker engine named by DOCKER_HOST), serves the demo's four PRs from `tests.github_double`
(GitHub's wire format, every request logged), and runs the real `patchkeeper sync --json`
twice on the same cache: cold, then warm. It prints the requests each PR cost. Targets,
reported as "TARGET MISSED" lines (the exit status is 0 unless something errors):

  cold: at most 2 requests per PR (the PR, its files at 100 a page);
  warm: 0 requests per merged PR, exactly 1 conditional request answered 304 per other PR.

Run: source /var/lib/patchkeeper-ci/env && .venv/bin/python benchmarks/github_requests.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import docker
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tests.github_double`

from patchkeeper.cli import app
from patchkeeper.demo.scenario import REPOSITORY
from patchkeeper.demo.setup import lay_out
from tests.github_double import GitHubDouble, LoggedRequest, add_demo_pulls, demo_recipe_on_github

COLD_TARGET = 2


def pr_of(request: LoggedRequest) -> int:
    return int(request.path.split("/pulls/")[1].split("/")[0])


def sync(recipe: Path, out: Path, double: GitHubDouble) -> tuple[list[LoggedRequest], float]:
    """One `patchkeeper sync --json`: the requests it made and its wall time."""
    since = len(double.requests)
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["sync", "--recipe", str(recipe), "--out", str(out), "--json"])
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise RuntimeError(f"sync exited {result.exit_code}: {result.stdout}{result.stderr}")
    json.loads(result.stdout)
    return double.requests[since:], elapsed


def main() -> int:
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="patchkeeper-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # Hermetic: neither the user's cache nor their git configuration is involved.
        os.environ["PATCHKEEPER_CACHE_DIR"] = str(tmp / "cache")
        os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
        os.environ["GIT_CONFIG_GLOBAL"] = os.devnull
        os.environ.pop("PATCHKEEPER_OFFLINE", None)
        demo = lay_out(tmp / "demo", client, "pk-bench/github-demo")
        try:
            with GitHubDouble(token=os.urandom(20).hex()) as double:
                os.environ["GITHUB_API_URL"] = double.api_url
                os.environ["GITHUB_TOKEN"] = double.token or ""
                add_demo_pulls(double, demo.upstream)
                recipe = demo_recipe_on_github(demo, tmp / "recipe")
                cold, cold_s = sync(recipe, tmp / "out", double)
                warm, warm_s = sync(recipe, tmp / "out", double)
                return report(double, cold, cold_s, warm, warm_s)
        finally:
            client.images.remove(demo.image, force=True)


def report(
    double: GitHubDouble,
    cold: list[LoggedRequest],
    cold_s: float,
    warm: list[LoggedRequest],
    warm_s: float,
) -> int:
    pulls = sorted(
        (p for (repo, _), p in double.pulls.items() if repo == REPOSITORY),
        key=lambda p: p.number,
    )
    cold_by = Counter(pr_of(r) for r in cold)
    warm_by = Counter(pr_of(r) for r in warm)
    not_modified = Counter(pr_of(r) for r in warm if r.status == 304 and r.conditional)
    print(f"{'PR':>7}  {'GitHub state':<14} {'cold':>5} {'warm':>5} {'warm 304':>9}")
    missed = []
    for pull in pulls:
        state = "merged" if pull.merged else pull.state
        n = pull.number
        print(f"#{n:>6}  {state:<14} {cold_by[n]:>5} {warm_by[n]:>5} {not_modified[n]:>9}")
        if cold_by[n] > COLD_TARGET:
            missed.append(f"cold sync spent {cold_by[n]} requests on #{n} (target <= 2)")
        if pull.merged and warm_by[n]:
            missed.append(f"warm sync spent {warm_by[n]} requests on merged #{n} (target 0)")
        if not pull.merged and (warm_by[n], not_modified[n]) != (1, 1):
            missed.append(
                f"warm sync spent {warm_by[n]} requests ({not_modified[n]} answered 304) on "
                f"#{n} (target: 1 conditional, 304)"
            )
    merged = [p for p in pulls if p.merged]
    other = [p for p in pulls if not p.merged]
    print(f"cold sync              {len(cold):>3} requests  {len(cold) / len(pulls):.2f} per PR")
    print(
        f"warm sync              {len(warm):>3} requests  "
        f"{sum(warm_by[p.number] for p in merged)} for {len(merged)} merged, "
        f"{sum(warm_by[p.number] for p in other)} for {len(other)} open "
        f"({sum(not_modified.values())} answered 304)"
    )
    print(f"rate limit spent       {double.limit - double.remaining:>3} of {double.limit}")
    print(f"wall time              {cold_s:>6.2f} s cold, {warm_s:.2f} s warm (whole sync)")
    for line in missed:
        print(f"TARGET MISSED: {line}")
    if not missed:
        print("targets met: cold <= 2 per PR; warm 0 per merged PR, one 304 per open PR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
