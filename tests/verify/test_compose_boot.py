"""The boot tier as compose runs it: the overlay's own compose files, real docker-compose.

A real SGLang with torch is too heavy here, so the recipe's service runs SGLang
0.5.13's real adapter (`adapter_server.py`, mounted by the recipe) inside the Python
nightly image, in place of `sglang.launch_server`: what is proven is the path a GPU box
takes (up, health wait, in-container hashes, suite, logs, teardown).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from patchkeeper.verify.image_runtime import LABEL
from tests.verify.compose_recipes import ADAPTER, compose_recipe
from tests.verify.conftest import sync


def boot(overlay: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(
        app,
        [
            "verify",
            "--overlay",
            str(overlay),
            "--tier",
            "boot",
            "--runtime",
            "image",
            "--json",
            *extra,
        ],
    )
    return done.exit_code, json.loads(done.stdout)


def leftovers(client: Any, run_id: str) -> list[str]:
    labels = [f"{LABEL}={run_id}", f"com.docker.compose.project=pkverify-{run_id}"]
    return [
        c.name
        for label in labels
        for c in client.containers.list(all=True, filters={"label": label})
    ]


def test_compose_boot_serves_the_overlay_and_tears_down(
    demo: Demo, python_nightly: str, docker_client: Any, claude_cli: str, tmp_path: Path
) -> None:
    recipe, port = compose_recipe(demo, tmp_path / "recipe", ADAPTER)
    doc = sync(recipe, python_nightly, tmp_path / "out")
    assert {p["id"]: p["state"] for p in doc["patches"]}["patchset/cache-report"] == "applied"

    started = time.monotonic()
    code, report = boot(Path(doc["overlay"]), "--deadline", "120", "--claude-cli", claude_cli)
    print(f"compose boot tier: {time.monotonic() - started:.1f} s")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0, checks
    assert report["runtime"] == "image" and report["logs"] == ""
    files = checks["overlay_files"]
    assert files["status"] == "passed" and "3 file(s) match the lock" in files["reason"]
    for name in ("mid_conversation_system", "tool_stream_blocks", "claude_code", "sse_grammar"):
        assert checks[name]["status"] == "passed", checks[name]
    assert checks["prefix_cache"]["status"] == "passed", checks["prefix_cache"]
    assert "cache_read_input_tokens=" in checks["prefix_cache"]["reason"]
    assert "speculative" not in checks  # the recipe declares no speculative decoding
    assert "demo-model" in checks["models_list"]["reason"]
    assert leftovers(docker_client, report["run_id"]) == []
    with socket.socket() as probe:  # the server went down with its project
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_service_that_never_becomes_healthy_fails_with_its_logs(
    demo: Demo, python_nightly: str, docker_client: Any, tmp_path: Path
) -> None:
    stuck = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit());"
        "print('loading weights, forever', flush=True); time.sleep(3600)"
    )
    recipe, _ = compose_recipe(demo, tmp_path / "recipe", ["python3", "-c", stuck])
    doc = sync(recipe, python_nightly, tmp_path / "out")

    code, report = boot(Path(doc["overlay"]), "--deadline", "8")
    assert code == 1
    [server] = report["checks"]
    assert server["name"] == "server" and server["status"] == "failed"
    assert "not healthy after 8 s" in server["reason"]
    assert "loading weights, forever" in server["reason"]
    assert leftovers(docker_client, report["run_id"]) == []


def test_a_failed_check_brings_the_service_logs_into_the_report(
    demo: Demo, python_nightly: str, docker_client: Any, tmp_path: Path
) -> None:
    # Without --enable-cache-report no cached tokens are reported, patch or not.
    recipe, _ = compose_recipe(demo, tmp_path / "recipe", ADAPTER, args=[])
    doc = sync(recipe, python_nightly, tmp_path / "out")

    code, report = boot(Path(doc["overlay"]), "--deadline", "120")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1
    assert checks["prefix_cache"]["status"] == "failed"
    assert "cache_read_input_tokens=0" in checks["prefix_cache"]["reason"]
    assert [n for n, c in checks.items() if c["status"] == "failed"] == ["prefix_cache"]
    assert "sglang 0.5.13 from /sgl-workspace/sglang/python/sglang" in report["logs"]
    assert leftovers(docker_client, report["run_id"]) == []


def test_a_port_already_served_is_refused_before_anything_starts(
    demo: Demo, python_nightly: str, tmp_path: Path
) -> None:
    recipe, port = compose_recipe(demo, tmp_path / "recipe", ADAPTER)
    doc = sync(recipe, python_nightly, tmp_path / "out")
    with socket.create_server(("127.0.0.1", port)):  # e.g. the production server
        code, report = boot(Path(doc["overlay"]))
    assert code == 2
    assert f"port {port} already answers on this host" in report["error"]
