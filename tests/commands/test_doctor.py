"""`patchkeeper doctor` against the real services: each finding, and each fix."""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from tests.github_double import GitHubDouble
from tests.oci import Image, layer, push, tree

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
runner = CliRunner()


def doctor(*args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = runner.invoke(app, ["doctor", "--json", *args])
    doc = json.loads(done.stdout)
    assert doc["schema"] == "patchkeeper.doctor/1"
    return done.exit_code, {c["name"]: c for c in doc["checks"]}


def _recipe(tmp_path: Path, demo: Demo, image: str, port: int, model: Path) -> Path:
    (tmp_path / "p.yaml").write_text(
        f"upstream: {{git: '{demo.upstream.url}'}}\nsource_root: /s\n"
        "patches:\n  - {pr: 1, why: x}\n"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"image: {image}\ntags: '(?P<date>\\d+)-(?P<sha>\\w+)'\npatchsets: [p.yaml]\n"
        f"service: {{port: {port}, model: {{path: /m, host_path: '{model}'}}}}\n"
    )
    return recipe


def test_doctor_on_a_ready_machine_and_recipe(
    demo: Demo, tmp_path: Path, github_double: GitHubDouble
) -> None:
    repository = f"pk-test/doctor-{uuid.uuid4().hex[:8]}"
    push(REGISTRY, repository, "1", Image([layer(tree({"/f": "x"}))]))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    recipe = _recipe(tmp_path, demo, f"{REGISTRY}/{repository}", free, model)
    _, checks = doctor("--recipe", str(recipe))
    assert checks["docker daemon"]["status"] == "ok"
    assert (
        checks["registry"]["status"] == "ok"
        and "reachable, anonymous" in checks["registry"]["detail"]
    )
    assert checks["upstream p"]["status"] == "ok"
    assert checks["model host_path"]["status"] == "ok"
    assert checks["service port"]["status"] == "ok"
    assert checks["github api"]["status"] == "ok"
    assert "requests left this hour" in checks["github api"]["detail"]
    assert github_double.token is None or github_double.token not in json.dumps(checks)


def test_doctor_names_each_problem_with_its_fix(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        recipe = _recipe(tmp_path, demo, "127.0.0.1:9/pk-test/none", port, tmp_path / "nope")
        code, checks = doctor("--recipe", str(recipe))
    assert code == 1
    assert checks["docker daemon"]["status"] == "fail"
    assert "systemctl start docker" in checks["docker daemon"]["fix"]
    assert checks["registry"]["status"] == "fail" and "unreachable" in checks["registry"]["detail"]
    assert checks["model host_path"]["status"] == "fail"
    assert "host_path" in checks["model host_path"]["fix"]
    assert checks["service port"]["status"] == "warn" and str(port) in checks["service port"]["fix"]
    assert checks["github api"]["status"] == "warn"


def test_doctor_reports_a_missing_upstream_branch(demo: Demo, tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, demo, f"{REGISTRY}/pk-test/x", 1, tmp_path)
    (tmp_path / "p.yaml").write_text(
        f"upstream: {{git: '{demo.upstream.url}', branch: no-such-branch}}\n"
        "source_root: /s\npatches:\n  - {pr: 1, why: x}\n"
    )
    _, checks = doctor("--recipe", str(recipe))
    assert checks["upstream p"]["status"] == "fail"
    assert "no branch 'no-such-branch'" in checks["upstream p"]["detail"]
    assert "upstream.branch" in checks["upstream p"]["fix"]
