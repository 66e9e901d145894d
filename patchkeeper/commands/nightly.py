"""`patchkeeper nightly`: what the scheduled workflow runs, in one tested entry point.

For each recipe: sync the newest nightly, prove the overlay with the adapter tier,
then commit the overlays to a bot branch, open or update one pull request with the
report, open an issue for every patch that stopped applying, and write the report
to the job summary. The workflow YAML only calls this.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patchkeeper.commands import sync
from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError
from patchkeeper.overlay.lock import Lock, LockedPatch
from patchkeeper.publish import branch as git_branch
from patchkeeper.publish.github import GitHubTracker, Posted, client_from_env
from patchkeeper.report import markdown as plan_markdown
from patchkeeper.ui import err_console, out_console
from patchkeeper.verify import reporting
from patchkeeper.verify.smoke import CheckResult
from patchkeeper.verify.tiers import Outcome, Runtime, Settings, verify

# The identity GitHub shows for commits made with the workflow's token.
BOT = git_branch.Author(
    "github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com"
)


@dataclass(frozen=True)
class Publish:
    """Where the results go; `repository=None` keeps them local (branch and summary only)."""

    branch: str = "patchkeeper/nightly"
    base: str | None = None  # default: the branch checked out now
    remote: str = "origin"
    repository: str | None = None
    push: bool = True
    author: git_branch.Author = BOT


@dataclass(frozen=True)
class RecipeRun:
    """One recipe's night: its lock, and how verify judged the overlay (None: not run)."""

    recipe: Path
    lock: Lock
    proof: Outcome | None = None

    @property
    def checks(self) -> list[CheckResult]:
        return self.proof.checks if self.proof else []

    @property
    def conflicts(self) -> list[LockedPatch]:
        return [p for p in self.lock.patches if p.state == "conflict"]

    @property
    def verified(self) -> bool:
        return reporting.passed(self.checks)

    @property
    def ok(self) -> bool:
        return not self.conflicts and self.verified

    def headline(self) -> str:
        patches = _tally(p.state for p in self.lock.patches)
        if self.conflicts:
            outcome = "**refused: conflict**"
        elif not self.checks:
            outcome = "written, not verified"
        else:
            verdict = "verified" if self.verified else "**verify FAILED**"
            outcome = f"{verdict} ({_tally(str(c.status) for c in self.checks)})"
        return f"| `{self.recipe.name}` | `{self.lock.image.ref}` | {patches} | {outcome} |"


def _tally(values: Iterable[str]) -> str:
    """ "3 applied, 1 upstream": counts in a stable order."""
    return ", ".join(f"{n} {value}" for value, n in sorted(Counter(values).items()))


@dataclass(frozen=True)
class Proving:
    """How each written overlay is proven: the adapter tier, in the image when it is here."""

    runtime: Runtime = Runtime.AUTO
    settings: Settings = field(default_factory=Settings)


def _one(recipe: Path, out: Path, source: SourceOptions, proving: Proving | None) -> RecipeRun:
    plan = make_plan(recipe, None, False, source)
    if plan.conflicts:
        return RecipeRun(recipe, plan.lock)
    overlay, _, lock = sync.write(plan, out)
    if proving is None:
        return RecipeRun(recipe, lock)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-verify-") as scratch:
        outcome = verify(lock, overlay, "adapter", proving.runtime, proving.settings, Path(scratch))
    return RecipeRun(recipe, lock, outcome)


def report(runs: Sequence[RecipeRun]) -> str:
    """The night as Markdown: a summary table, then each recipe's plan and proof."""
    lines = [
        "## patchkeeper nightly",
        "",
        "| recipe | nightly | patches | outcome |",
        "|---|---|---|---|",
        *(run.headline() for run in runs),
        "",
    ]
    for run in runs:
        lines += [f"### `{run.recipe.name}`", "", plan_markdown(run.lock)]
        if run.proof:
            proof = run.proof
            lines.append(reporting.proof_markdown(proof.checks, proof.verdicts, proof.title))
        upstream = [p for p in run.lock.patches if p.state == "upstream"]
        if upstream:
            names = ", ".join(f"#{p.pr}" if p.pr else p.id for p in upstream)
            lines += [
                f"Already in this nightly: {names}. `patchkeeper prune --recipe "
                f"{run.recipe.name}` retires them once every tracked nightly has them.",
                "",
            ]
    return "\n".join(lines)


def _issue(run: RecipeRun, patch: LockedPatch, body: str) -> tuple[str, str]:
    label = f"PR #{patch.pr}" if patch.pr else f"patch {patch.id}"
    title = f"patchkeeper: {label} no longer applies ({run.recipe.stem})"
    text = (
        f"`{label}` ({patch.why}) does not apply to `{run.lock.image.ref}`, so the "
        f"nightly overlay for `{run.recipe.name}` was not written.\n\n{body}"
    )
    return title, text


def run(
    recipes: Sequence[Path],
    out: Path,
    source: SourceOptions,
    proving: Proving | None,
    publish: Publish,
) -> int:
    if not recipes:
        raise ConfigError("nightly: no recipes (--recipe, or PATCHKEEPER_RECIPES)")
    runs = []
    for recipe in recipes:
        err_console.print(f"nightly: {recipe}")
        runs.append(_one(recipe, out, source, proving))
    body = report(runs)
    reporting.append_step_summary(body + "\n")
    out_console.print(body, markup=False, highlight=False)
    posted: list[Posted] = []
    tags = ", ".join(sorted({r.lock.image.ref.rsplit(":", 1)[-1] for r in runs}))
    update = git_branch.commit_paths(
        Path.cwd(), [out], publish.branch, f"patchkeeper: overlays for {tags}", publish.author
    )
    if publish.push:
        update = git_branch.push(Path.cwd(), update, publish.remote)
    if publish.repository:
        tracker = GitHubTracker(client_from_env(), publish.repository)
        if update.commit is not None and publish.push:
            base = publish.base or git_branch.current_branch(Path.cwd())
            title = f"patchkeeper: overlays for {tags}"
            posted.append(tracker.upsert_pull(publish.branch, base, title, body))
        for night in runs:
            for patch in night.conflicts:
                posted.append(tracker.open_issue(*_issue(night, patch, plan_markdown(night.lock))))
    for item in posted:
        verb = "opened" if item.created else "updated"
        err_console.print(f"{verb} {item.kind} #{item.number}: {item.url}")
    if update.commit is None:
        err_console.print("overlays unchanged from the base branch: nothing to propose")
    return EXIT_OK if all(r.ok for r in runs) else EXIT_CONFLICT
