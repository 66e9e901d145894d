"""`patchkeeper doctor` against the real services: each finding, and each fix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from patchkeeper.overlay import compose_cli
from tests.github_double import GitHubDouble
from tests.names import unique
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
    repository = unique("pk-test/doctor")
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


ADOPTED = """\
services:
  sglang:
    image: lmsysorg/sglang:latest
    runtime: nvidia
    ports: ["${HOST_PORT}:8072"]
    command: [python3, -m, sglang.launch_server, --port, "8072"]
    volumes:
      - ./sglang-patched-protocol.py:/sgl-workspace/sglang/python/sglang/srt/protocol.py:ro
      - ./gone.jinja:/templates/no-thinking.jinja:ro
"""


def test_doctor_reads_the_adopted_compose_file_as_compose_models_it(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]  # the published port, taken: 30000 is not looked at
        recipe = _recipe(tmp_path, demo, f"{REGISTRY}/pk-test/x", 30000, tmp_path)
        (tmp_path / "compose.yaml").write_text(ADOPTED)
        (tmp_path / ".env").write_text(f"HOST_PORT={port}\n")  # Compose's own interpolation
        (tmp_path / "sglang-patched-protocol.py").write_text("# by hand\n")
        recipe.write_text(
            recipe.read_text().replace("service: {", "service: {compose_file: compose.yaml, ")
        )
        code, checks = doctor("--recipe", str(recipe))
    assert code == 1
    where = f"{tmp_path / 'compose.yaml'} service sglang"
    runtime = checks["service runtime"]
    assert runtime["status"] == "fail"  # needed, so not a warning
    assert runtime["detail"].startswith(f"{where} needs nvidia; the engine has runtimes: ")
    assert "nvidia-ctk runtime configure" in runtime["fix"]
    assert checks["service port"]["status"] == "warn"
    assert checks["service port"]["detail"].startswith(f"port {port} ({where}) is taken")
    mounts = checks["service mounts"]
    assert mounts["status"] == "fail"
    assert f"what is not here: {tmp_path / 'gone.jinja'} (" in mounts["detail"]
    assert "sglang-patched-protocol" not in mounts["detail"]


def test_doctor_finds_compose_as_up_does_when_run_from_the_venv(tmp_path: Path) -> None:
    """`.venv/bin/patchkeeper`, not activated: no `docker compose` plugin on PATH, only
    v1 `docker-compose`; the venv's bundled v2 binary is what `up` runs, so it counts."""
    patchkeeper = Path(sys.executable).with_name("patchkeeper")
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "docker-compose"):  # v1 on PATH, and no `docker` at all
        found = shutil.which(tool)
        assert found is not None
        (bare / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bare), "GITHUB_API_URL": "http://127.0.0.1:9"}
    env.pop(compose_cli.ENV, None)
    done = subprocess.run(
        [str(patchkeeper), "doctor", "--json"], capture_output=True, text=True, env=env, check=False
    )
    check = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["compose v2"]
    assert check["status"] == "ok", check
    assert check["detail"].endswith("/compose/docker-compose (v2)")
