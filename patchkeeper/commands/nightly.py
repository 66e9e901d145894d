"""`patchkeeper nightly`: what the scheduled workflow runs, in one tested entry point.

For each recipe: sync the newest nightly, prove the overlay with the adapter tier,
then commit the overlays to a bot branch, open or update one pull request with the
report, open an issue for every patch that stopped applying, and write the report
to the job summary. The workflow YAML only calls this.

Whatever would fail only after the night's work (not a git checkout, `--out` not
writable, a detached HEAD, publishing without a token) is checked first. A dry run
runs those checks and plans each recipe, then says what the night would write,
prove, commit and publish, and does none of it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import git

from patchkeeper import boundary
from patchkeeper import markdown as md
from patchkeeper.commands import sync
from patchkeeper.commands._common import SourceOptions, make_plan, writable_dir
from patchkeeper.errors import (
    EXIT_CONFLICT,
    EXIT_INTERNAL,
    EXIT_OK,
    ConfigError,
    OutputError,
    PatchkeeperError,
)
from patchkeeper.overlay.lock import Lock, LockedPatch
from patchkeeper.patching.port import PatchState
from patchkeeper.publish import branch as git_branch
from patchkeeper.publish.github import GitHubTracker, Posted, client_from_env
from patchkeeper.report import markdown as plan_markdown
from patchkeeper.ui import err_console
from patchkeeper.upstream.github import GitHubSettings
from patchkeeper.verify import reporting
from patchkeeper.verify.smoke import CheckResult
from patchkeeper.verify.tiers import Outcome, Runtime, Settings, verify
from patchkeeper.verify.witness import unproven

_LINE_BREAK = re.compile(r"[\r\n]")
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
    allow_unproven: bool = False

    @property
    def checks(self) -> list[CheckResult]:
        return self.proof.checks if self.proof else []

    @property
    def conflicts(self) -> list[LockedPatch]:
        return [p for p in self.lock.patches if p.state is PatchState.CONFLICT]

    @property
    def verified(self) -> bool:
        return reporting.passed(self.checks)

    @property
    def unproven(self) -> list[str]:
        """Patches whose witness proved nothing tonight (verify's rule, and its exit 1)."""
        return [v.patch for v in unproven(self.proof.verdicts)] if self.proof else []

    @property
    def ok(self) -> bool:
        return not self.conflicts and self.verified and (self.allow_unproven or not self.unproven)

    def headline(self) -> str:
        patches = _tally(p.state for p in self.lock.patches)
        if self.conflicts:
            outcome = "**refused: conflict**"
        elif not self.checks:
            outcome = "written, not verified"
        else:
            verdict = "verified" if self.verified else "**verify FAILED**"
            if self.verified and self.unproven and not self.allow_unproven:
                verdict = f"**unproven**: {', '.join(f'`{p}`' for p in self.unproven)}"
            outcome = f"{verdict} ({_tally(str(c.status) for c in self.checks)})"
        return f"| `{self.recipe.name}` | `{self.lock.image.ref}` | {patches} | {outcome} |"


@dataclass(frozen=True)
class RecipeFailure:
    """A recipe that failed tonight, however (unreachable, bad input, a bug in patchkeeper):
    reported with its exit code, never fatal to the other recipes."""

    recipe: Path
    message: str
    exit_code: int

    @classmethod
    def of(cls, recipe: Path, error: Exception) -> RecipeFailure:
        if isinstance(error, PatchkeeperError):
            return cls(recipe, str(error), error.exit_code)
        message, _ = boundary.bug(error, ["nightly", "--recipe", str(recipe)])
        return cls(recipe, message, EXIT_INTERNAL)

    def headline(self) -> str:
        reason = md.text(self.message.splitlines()[0] if self.message else "")
        outcome = f"**error** (exit {self.exit_code}): {reason}"
        return f"| `{self.recipe.name}` | - | - | {outcome} |"

    def issue(self) -> tuple[str, str]:
        """The issue's title (the same every night, so it is updated, not doubled) and body."""
        title = f"patchkeeper: nightly failed for {self.recipe.stem}"
        text = (
            f"The nightly run could not sync, prove or propose `{self.recipe.name}` "
            f"(exit {self.exit_code}); the other recipes went on.\n\n{md.fence(self.message)}\n"
        )
        return title, text


def _tally(values: Iterable[str]) -> str:
    """ "3 applied, 1 upstream": counts in a stable order."""
    return ", ".join(f"{n} {value}" for value, n in sorted(Counter(values).items()))


@dataclass(frozen=True)
class Proving:
    """How each written overlay is proven: the adapter tier, in the image when it is here."""

    runtime: Runtime = Runtime.AUTO
    settings: Settings = field(default_factory=Settings)
    allow_unproven: bool = False  # a witness that proves nothing does not fail the night


def _one(recipe: Path, out: Path, source: SourceOptions, proving: Proving | None) -> RecipeRun:
    plan = make_plan(recipe, None, False, source)
    if plan.conflicts:
        return RecipeRun(recipe, plan.lock)
    overlay, _, lock = sync.write(plan, out)
    if proving is None:
        return RecipeRun(recipe, lock)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-verify-") as scratch:
        outcome = verify(lock, overlay, "adapter", proving.runtime, proving.settings, Path(scratch))
    return RecipeRun(recipe, lock, outcome, proving.allow_unproven)


def report(runs: Sequence[RecipeRun], failures: Sequence[RecipeFailure] = ()) -> str:
    """The night as Markdown: a summary table, then each recipe's plan and proof."""
    lines = [
        "## patchkeeper nightly",
        "",
        "| recipe | nightly | patches | outcome |",
        "|---|---|---|---|",
        *(run.headline() for run in runs),
        *(failure.headline() for failure in failures),
        "",
    ]
    for failure in failures:
        lines += [f"### `{failure.recipe.name}`", "", md.fence(failure.message), ""]
    for run in runs:
        lines += [f"### `{run.recipe.name}`", "", plan_markdown(run.lock)]
        if run.proof:
            proof = run.proof
            lines.append(reporting.proof_markdown(proof.checks, proof.verdicts, proof.title))
        upstream = [p for p in run.lock.patches if p.state is PatchState.UPSTREAM]
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
        f"`{label}` ({md.text(patch.why)}) does not apply to `{run.lock.image.ref}`, so the "
        f"nightly overlay for `{run.recipe.name}` was not written.\n\n{body}"
    )
    return title, text


def _appendable(path: Path, what: str) -> None:
    """A file the night appends to at its end: refused now if it never could be."""
    if path.is_dir():
        raise OutputError(f"{what}: {path} is a directory, not a file")
    if not path.parent.is_dir():
        raise OutputError(f"{what}: {path}: its directory does not exist")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise OutputError(f"{what}: {path}: not writable")


def preflight(out: Path, publish: Publish, outputs: Path | None = None) -> None:
    """What would otherwise fail after every recipe's sync: the checkout, `--out`, and
    where the summary, the step outputs and the report go."""
    try:
        git.Repo(Path.cwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ConfigError(
            f"nightly: {Path.cwd()} is not inside a git repository (run it in the checkout "
            "the overlays are committed to)"
        ) from None
    if publish.repository and publish.push and publish.base is None:
        git_branch.current_branch(Path.cwd())  # the PR's base: refuses a detached HEAD
    if publish.repository and not GitHubSettings.from_env().token:
        raise ConfigError(
            f"nightly: publishing to {publish.repository} (--repository or GITHUB_REPOSITORY) "
            "needs GITHUB_TOKEN (or GH_TOKEN); set one, or unset the repository to publish "
            "nothing"
        )
    writable_dir(out, "--out")
    summary = os.environ.get(reporting.STEP_SUMMARY)
    if summary:
        _appendable(Path(summary), reporting.STEP_SUMMARY)
    if outputs is not None:
        _appendable(outputs, "--outputs")
        runner_temp = os.environ.get("RUNNER_TEMP")
        if runner_temp is not None and not Path(runner_temp).is_dir():
            raise OutputError(f"RUNNER_TEMP={runner_temp}: not a directory (the report goes there)")
        writable_dir(_report_path().parent, "RUNNER_TEMP")


def dry_run(
    recipes: Sequence[Path], out: Path, source: SourceOptions, proving: bool, publish: Publish
) -> int:
    """Plan each recipe and say what the night would do; write, prove and publish nothing."""
    runs: list[RecipeRun] = []
    codes = [EXIT_OK]
    for recipe in recipes:
        try:
            runs.append(RecipeRun(recipe, make_plan(recipe, None, False, source).lock))
        except PatchkeeperError as err:
            err_console.print(f"error: {recipe}: {err}", markup=False)
            codes.append(err.exit_code)
    for night in runs:
        sys.stdout.write(f"### `{night.recipe.name}`\n\n{plan_markdown(night.lock)}\n")
    say = [
        f"would write {night.recipe.name}'s overlay for {night.lock.image.ref} under {out}"
        + (" and prove it with the adapter tier" if proving else "")
        for night in runs
        if not night.conflicts
    ]
    if runs:
        push = f" and push it to {publish.remote}" if publish.push else ""
        say.append(f"would commit {out} to branch {publish.branch}{push}")
    if publish.repository:
        base = publish.base or "the checked-out branch"
        say.append(f"would open or update a pull request on {publish.repository} into {base}")
        for night in runs:
            for patch in night.conflicts:
                say.append(
                    f"would open an issue on {publish.repository}: {_issue(night, patch, '')[0]}"
                )
                codes.append(EXIT_CONFLICT)
    for line in say:
        err_console.print(f"dry run: {line}", markup=False, highlight=False, soft_wrap=True)
    err_console.print("dry run: nothing was written, committed or published", markup=False)
    return max(codes)


def run(
    recipes: Sequence[Path],
    out: Path,
    source: SourceOptions,
    proving: Proving | None,
    publish: Publish,
    outputs: Path | None = None,
    dry: bool = False,
) -> int:
    """Every recipe's night, then the report, the commit, and what is published."""
    if not recipes:
        raise ConfigError("nightly: no recipes (--recipe, or PATCHKEEPER_RECIPES)")
    preflight(out, publish, outputs)
    if dry:
        return dry_run(recipes, out, source, proving is not None, publish)
    runs, failures = _nights(recipes, out, source, proving)
    body = report(runs, failures)
    reporting.append_step_summary(body + "\n")
    sys.stdout.write(body + "\n")  # verbatim: Markdown must not be re-wrapped
    sys.stdout.flush()
    title = f"patchkeeper: overlays for {_tags(runs)}"
    update = _commit(runs, out, publish, title)
    posted, unposted = _publish(runs, failures, update, publish, title, body)
    for item in posted:
        verb = "opened" if item.created else "updated"
        err_console.print(f"{verb} {item.kind} #{item.number}: {item.url}", markup=False)
    if update is not None and update.commit is None:
        err_console.print("overlays unchanged from the base branch: nothing to propose")
    changed = update is not None and update.commit is not None
    if outputs is not None:
        _write_outputs(outputs, runs, posted, changed, body)
    return max([exit_code(runs, failures), *(err.exit_code for err in unposted)])


def _nights(
    recipes: Sequence[Path], out: Path, source: SourceOptions, proving: Proving | None
) -> tuple[list[RecipeRun], list[RecipeFailure]]:
    """Each recipe synced (and proven); one recipe's trouble never stops the others'."""
    runs: list[RecipeRun] = []
    failures: list[RecipeFailure] = []
    for recipe in recipes:
        err_console.print(f"nightly: {recipe}", markup=False)
        try:
            runs.append(_one(recipe, out, source, proving))
        except Exception as err:  # one recipe's trouble, even a bug, must not hide the others'
            failure = RecipeFailure.of(recipe, err)
            err_console.print(f"error: {recipe}: {failure.message}", markup=False)
            failures.append(failure)
    return runs, failures


def _tags(runs: Sequence[RecipeRun]) -> str:
    return ", ".join(sorted({r.lock.image.ref.rsplit(":", 1)[-1] for r in runs}))


def _commit(
    runs: Sequence[RecipeRun], out: Path, publish: Publish, message: str
) -> git_branch.BranchUpdate | None:
    """The overlays committed on the publish branch (and pushed), when any recipe ran."""
    if not runs:
        return None
    update = git_branch.commit_paths(Path.cwd(), [out], publish.branch, message, publish.author)
    return git_branch.push(Path.cwd(), update, publish.remote) if publish.push else update


def _publish(
    runs: Sequence[RecipeRun],
    failures: Sequence[RecipeFailure],
    update: git_branch.BranchUpdate | None,
    publish: Publish,
    title: str,
    body: str,
) -> tuple[list[Posted], list[PatchkeeperError]]:
    """The pull request, an issue per conflict and per failed recipe: each post is tried,
    one refused does not stop the others."""
    posted: list[Posted] = []
    unposted: list[PatchkeeperError] = []
    if not publish.repository:
        return posted, unposted
    tracker = GitHubTracker(client_from_env(), publish.repository)
    posts: list[Callable[[], Posted]] = []
    if update is not None and update.commit is not None and publish.push:
        base = publish.base or git_branch.current_branch(Path.cwd())
        posts.append(partial(tracker.upsert_pull, publish.branch, base, title, body))
    for night in runs:
        for patch in night.conflicts:
            issue = _issue(night, patch, plan_markdown(night.lock))
            posts.append(partial(tracker.open_issue, *issue))
    posts += [partial(tracker.open_issue, *failure.issue()) for failure in failures]
    for post in posts:
        try:
            posted.append(post())
        except PatchkeeperError as err:  # the other posts still go out
            err_console.print(f"error: {err}", markup=False)
            unposted.append(err)
    return posted, unposted


def exit_code(runs: Sequence[RecipeRun], failures: Sequence[RecipeFailure]) -> int:
    """The night's most serious: a bug > unreachable > bad input > conflict, failed check
    or unproven witness > ok."""
    codes = [f.exit_code for f in failures]
    codes += [EXIT_OK if r.ok else EXIT_CONFLICT for r in runs]
    return max(codes, default=EXIT_OK)


def _report_path() -> Path:
    """Where the whole report is written for later steps: the runner's temporary directory."""
    return Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "patchkeeper-nightly.md"


def output_entry(name: str, value: str) -> str:
    """One `$GITHUB_OUTPUT` entry. A value with a line break (a URL GitHub answered, say)
    goes between random delimiters, as the Actions toolkit writes it, so it cannot add
    outputs of its own."""
    if not _LINE_BREAK.search(value):
        return f"{name}={value}\n"
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    lines = re.sub(r"\r\n?", "\n", value)  # the runner reads lines, ending at CR, LF or CRLF
    return f"{name}<<{delimiter}\n{lines}\n{delimiter}\n"


def _write_outputs(
    outputs: Path, runs: Sequence[RecipeRun], posted: Sequence[Posted], changed: bool, body: str
) -> None:
    """Step outputs for later steps (`$GITHUB_OUTPUT`): one `name=value` line each."""
    pull = next((p for p in posted if p.kind == "pull"), None)
    report_path = _report_path()
    report_path.write_text(body + "\n", encoding="utf-8")
    conflicts = [
        {"recipe": r.recipe.name, "patch": p.id, "pr": p.pr} for r in runs for p in r.conflicts
    ]
    values = {
        "pr-number": str(pull.number) if pull else "",
        "pr-url": pull.url if pull else "",
        "changed": "true" if changed else "false",
        "conflicts": json.dumps(conflicts),
        "report": str(report_path),
    }
    try:
        with outputs.open("a", encoding="utf-8") as handle:
            handle.writelines(output_entry(name, value) for name, value in values.items())
    except OSError as err:
        raise ConfigError(f"{outputs}: cannot append the step outputs: {err}") from None
