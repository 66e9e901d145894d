"""Mutation testing of the core: how many deliberate bugs do the fast tests catch?

Each row of MODULES below is mutated by mutmut on its own, in a scratch copy of the
checkout, and only the row's tests run against its mutants (fast tests: Docker-backed
ones are deselected, so a run fits on two shared cores). Globs in either column are
expanded at run time, so a row keeps working when files are added or renamed; a row
whose globs match nothing is reported, not skipped silently.

    python benchmarks/mutation.py                     # every row, 2 workers, niced
    python benchmarks/mutation.py --only overlay -j 1 # one row
    python benchmarks/mutation.py --json after.json --against before.json

Score = detected / mutants, where detected counts mutants a test failed on (killed) or
that hung until the timeout; "no tests" (no selected test reaches the code) counts as
survived, since no test would notice that bug either. A row of several files also gets
one line per file. Survivors are listed in <workdir>/<row>/survivors.txt (with their
diffs under --diffs) for raising the tests. mutmut mutates code inside functions only:
module-level constants (limits, exit codes, regexes) are pinned by tests all the same,
but they do not show in these numbers.

mutmut is used rather than hand-rolled mutation: it forks from one warm pytest process
per mutant and runs only the tests that reach the mutated function, which is what
makes a run of the whole core take minutes rather than hours.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name: (files to mutate, tests that cover them). Paths are relative to the repository.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "patching": (["patchkeeper/patching/*.py"], ["tests/patching/"]),
    "containment": (["patchkeeper/containment.py"], ["tests/test_containment*.py"]),
    "overlay": (["patchkeeper/overlay/*.py"], ["tests/overlay/"]),
    "image.layers": (
        [
            "patchkeeper/image/layers.py",
            "patchkeeper/image/record.py",
            "patchkeeper/image/verified.py",
            "patchkeeper/image/layered.py",
        ],
        ["tests/image/test_layers*.py", "tests/image/test_registry.py"],
    ),
    "image.registry": (
        [
            "patchkeeper/image/registry*.py",
            "patchkeeper/image/ranged.py",
            "patchkeeper/image/cache.py",
            "patchkeeper/image/digests.py",
        ],
        [
            "tests/image/test_registry*.py",
            "tests/image/test_cache*.py",
            "tests/image/test_digests.py",
            "tests/image/test_integrity.py",
            "tests/image/test_provenance.py",
        ],
    ),
    "image.identity": (["patchkeeper/image/identity.py"], ["tests/image/test_identity*.py"]),
    "verify.sse": (["patchkeeper/verify/sse.py"], ["tests/verify/test_sse*.py"]),
    "verify.smoke": (
        ["patchkeeper/verify/smoke.py"],
        [
            "tests/verify/test_smoke_checks.py",  # each check's reasons, one by one
            "tests/verify/test_checks_catch.py",  # a scripted endpoint per failure mode
            "tests/verify/test_adapter_tier.py::test_vanilla_0513_fails_with_precise_reasons",
            "tests/verify/test_adapter_tier.py::test_the_schema_half_alone_still_fails_in_the_template",
        ],
    ),
    "errors": (["patchkeeper/errors.py"], ["tests/test_errors*.py"]),
}
PYTEST_ARGS = ["-p", "no:cacheprovider", "-m", "not docker", "-q", "-x"]
COPIED = ["patchkeeper", "tests", "pyproject.toml", "README.md", "recipes", "patchsets"]
DETECTED = {"killed", "timeout", "caught by type check"}
MUTANT = re.compile(r"^(?P<module>.+?)\.x[_ǁ]")  # patchkeeper.overlay.write.x__point__mutmut_3


@dataclass
class Score:
    name: str
    mutants: int = 0
    killed: int = 0
    timeout: int = 0
    survived: int = 0
    no_tests: int = 0
    other: int = 0
    error: str = ""

    @property
    def detected(self) -> int:
        return self.killed + self.timeout

    @property
    def score(self) -> float | None:
        return self.detected / self.mutants if self.mutants else None


def expand(patterns: list[str]) -> list[str]:
    """Globs to existing paths; `file::test` node ids are kept when their file exists."""
    found: list[str] = []
    for pattern in patterns:
        path, colons, test = pattern.partition("::")
        matches = [f"{m}{colons}{test}" for m in sorted(glob.glob(path, root_dir=REPO))]
        found += [m for m in matches if "__pycache__" not in m]
    return found


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare(workdir: Path, mutate: list[str], tests: list[str]) -> None:
    """A fresh copy of the checkout whose pyproject tells mutmut what to mutate and run."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, workdir / name)
    with (workdir / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["patchkeeper"]\n'
            f"only_mutate = {toml_list(mutate)}\n"
            f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
            f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
            f"also_copy = {toml_list(['recipes', 'patchsets', 'README.md'])}\n"
            "use_git_change_detection = false\n"
        )


def statuses(workdir: Path) -> dict[str, str]:
    """mutant name -> mutmut's status, read from the .meta files mutmut leaves."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in (workdir / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        for key, code in data.get("exit_code_by_key", {}).items():
            found[key] = status_by_exit_code[code]
    return found


def tally(name: str, found: dict[str, str]) -> Score:
    score = Score(name)
    for status in found.values():
        score.mutants += 1
        if status == "killed" or status == "caught by type check":
            score.killed += 1
        elif status == "timeout":
            score.timeout += 1
        elif status == "survived":
            score.survived += 1
        elif status == "no tests":
            score.no_tests += 1
        else:
            score.other += 1
    return score


def by_file(found: dict[str, str]) -> list[Score]:
    """One score per mutated module: `patching` -> `  patching.port`, ..."""
    modules: dict[str, dict[str, str]] = {}
    for mutant, status in found.items():
        match = MUTANT.match(mutant)
        module = match["module"].removeprefix("patchkeeper.") if match else "?"
        modules.setdefault(module, {})[mutant] = status
    return [tally(f"  {module}", modules[module]) for module in sorted(modules)]


def run_row(name: str, workdir: Path, jobs: int, diffs: bool) -> list[Score]:
    mutate_patterns, test_patterns = MODULES[name]
    mutate, tests = expand(mutate_patterns), expand(test_patterns)
    if not mutate or not tests:
        failed = Score(name)
        failed.error = f"nothing matches {mutate_patterns if not mutate else test_patterns}"
        return [failed]
    prepare(workdir, mutate, tests)
    log = workdir / "mutmut.log"
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
            cwd=workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    found = statuses(workdir)
    if done.returncode != 0 and not found:
        failed = Score(name)
        failed.error = f"mutmut exited {done.returncode}; see {log}"
        return [failed]
    survivors = sorted(k for k, s in found.items() if s not in DETECTED)
    with (workdir / "survivors.txt").open("w") as handle:
        for mutant in survivors:
            handle.write(f"## {mutant} ({found[mutant]})\n")
            if diffs:
                shown = subprocess.run(
                    [sys.executable, "-m", "mutmut", "show", mutant],
                    cwd=workdir,
                    capture_output=True,
                    text=True,
                )
                handle.write(f"{shown.stdout}\n")
    files = by_file(found)
    return [tally(name, found), *(files if len(files) > 1 else [])]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table(scores: list[Score], before: dict[str, dict[str, int]]) -> str:
    header = ["module", "mutants", "killed", "timeout", "survived", "no tests", "score"]
    if before:
        header += ["before (detected/mutants)", "before score"]
    rows = [header]
    for s in scores:
        row = [s.name, *map(str, (s.mutants, s.killed, s.timeout, s.survived, s.no_tests))]
        row.append(s.error or percent(s.score))
        if before:
            old = before.get(s.name)
            if old and old["mutants"]:
                detected = old["killed"] + old["timeout"]
                row += [f"{detected}/{old['mutants']}", percent(detected / old["mutants"])]
            else:
                row += ["-", "-"]
        rows.append(row)
    total = sum(s.mutants for s in scores if not s.name.startswith(" "))
    detected = sum(s.detected for s in scores if not s.name.startswith(" "))
    rows.append(["all", str(total), "", "", "", "", percent(detected / total if total else None)])
    rows[-1] += [""] * (len(header) - len(rows[-1]))
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(header))]
    lines = []
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |")
        if r is header:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MODULES), help="rows to run")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="mutmut workers (default 2)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "patchkeeper-mutation",
        help="scratch copies of the checkout, one per row, with logs and survivors",
    )
    parser.add_argument("--diffs", action="store_true", help="write each survivor's diff")
    parser.add_argument("--json", type=Path, help="write the scores here")
    parser.add_argument("--against", type=Path, help="an earlier --json, shown beside")
    args = parser.parse_args()
    os.nice(10)  # a shared machine: mutation runs yield to everything else
    before = json.loads(args.against.read_text()) if args.against else {}
    scores = []
    for name in args.only or list(MODULES):
        print(f"mutating {name} ...", flush=True)
        rows = run_row(name, args.workdir / name, args.jobs, args.diffs)
        print(f"  {rows[0].detected}/{rows[0].mutants} detected {rows[0].error}", flush=True)
        scores += rows
    print(table(scores, before))
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else {}
        previous.update({s.name: {**vars(s)} for s in scores})
        args.json.write_text(json.dumps(previous, indent=2) + "\n")
    return 0 if all(not s.error for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
