"""`patchkeeper validate`: check recipes and their patchsets offline (as pre-commit's
validate-config): the schema, each `witness:` against the smoke checks, and each
`exclude:` glob against the files its change touches (a glob that matches nothing
is a warning: a typo, or a file upstream renamed).

Nothing is fetched: a PR's files come from the local mirror when an earlier sync
left it there; otherwise the glob is noted as unchecked.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path

from git.exc import GitCommandError

from patchkeeper.config.load import load_patchset, load_recipe
from patchkeeper.config.models import Patch, Patchset
from patchkeeper.errors import EXIT_BAD_INPUT, EXIT_OK, PatchkeeperError
from patchkeeper.patching.diff import parse_diff
from patchkeeper.ui import out_console, print_document
from patchkeeper.upstream.mirror import PULL_REF, GitMirror
from patchkeeper.verify.catalog import CHECK_NAMES as SMOKE_CHECKS


@dataclass(frozen=True)
class Problem:
    level: str  # "error", "warning" or "note"
    file: str
    message: str


def witness_problems(patchset: Patchset) -> list[Problem]:
    """A `witness:` that names no smoke check can never prove anything."""
    return [
        Problem(
            "error",
            str(patchset.path),
            f"patch {patch.key}: witness {patch.witness!r} is not a smoke check "
            f"(choose from {', '.join(SMOKE_CHECKS)})",
        )
        for patch in patchset.patches
        if patch.witness is not None and patch.witness not in SMOKE_CHECKS
    ]


def _changed_files(patchset: Patchset, patch: Patch) -> list[str] | None:
    """The repository paths the change touches, or None when unknown offline."""
    if patch.diff is not None:
        text = patch.diff.read_text(encoding="utf-8", errors="replace")
        return [str(f.path) for f in parse_diff(text, str(patch.diff))]
    mirror = GitMirror(patchset.upstream.clone_url)
    head = mirror.rev(PULL_REF.format(number=patch.pr, kind="head"))
    base = mirror.rev(f"refs/heads/{patchset.upstream.branch}")
    if head is None or base is None:
        return None
    try:
        names: str = mirror.repo.git.diff("--name-only", "--no-renames", f"{base}...{head}")
    except GitCommandError:
        return None
    return names.splitlines()


def exclude_problems(patchset: Patchset) -> list[Problem]:
    problems = []
    for patch in patchset.patches:
        if not patch.exclude:
            continue
        files = _changed_files(patchset, patch)
        if files is None:
            problems.append(
                Problem(
                    "note",
                    str(patchset.path),
                    f"patch {patch.key}: exclude globs not checked (PR not in the local "
                    "mirror; run sync or status once)",
                )
            )
            continue
        for glob in patch.exclude:
            if not any(fnmatch.fnmatch(name, glob) for name in files):
                problems.append(
                    Problem(
                        "warning",
                        str(patchset.path),
                        f"patch {patch.key}: exclude {glob!r} matches none of the "
                        f"{len(files)} file(s) it changes",
                    )
                )
    return problems


def check(recipe_path: Path, seen: set[Path]) -> tuple[list[str], list[Problem]]:
    """(files checked, problems) for one recipe and its patchsets not in `seen`
    (recipes share patchsets); never raises."""
    try:
        recipe = load_recipe(recipe_path)
    except PatchkeeperError as err:
        return [str(recipe_path)], [Problem("error", str(recipe_path), str(err))]
    checked, problems = [str(recipe_path)], []
    for path in recipe.patchsets:
        if path in seen:
            continue
        seen.add(path)
        checked.append(str(path))
        try:
            patchset = load_patchset(path)
            problems += witness_problems(patchset) + exclude_problems(patchset)
        except PatchkeeperError as err:
            problems.append(Problem("error", str(path), str(err)))
    return checked, problems


def run(recipes: list[Path], as_json: bool) -> int:
    checked: list[str] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for recipe in recipes:
        files, found = check(recipe, seen)
        checked += files
        problems += found
    ok = not any(p.level == "error" for p in problems)
    if as_json:
        doc = {"ok": ok, "files": checked, "problems": [asdict(p) for p in problems]}
        print_document("validate", doc)
    else:
        style = {"error": "red", "warning": "yellow", "note": "dim"}
        for problem in problems:
            out_console.print(
                f"[{style[problem.level]}]{problem.level}[/] {problem.file}: ", end=""
            )
            out_console.print(problem.message, markup=False, highlight=False)
        verdict = "ok" if ok else "invalid"
        out_console.print(f"{verdict}: {len(checked)} file(s) checked", highlight=False)
    return EXIT_OK if ok else EXIT_BAD_INPUT
