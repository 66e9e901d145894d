"""The adapter tier on SGLang 0.5.13's own adapter (PyPI wheel): bugs, partial ports, fixes."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.cli import app
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import PROTOCOL, SOURCE_ROOT, adapter_files
from patchkeeper.demo.setup import Demo
from patchkeeper.verify.runtime import adapter_endpoint
from patchkeeper.verify.sglang_env import HostSglang, ensure_release, overlay_package
from patchkeeper.verify.smoke import SmokeOptions, Status, run_suite
from tests.conftest import WHEEL_CACHE

REPO = Path(__file__).resolve().parents[2]
CHECKS = ["mid_conversation_system", "tool_stream_blocks", "sse_grammar"]


@pytest.fixture(scope="session")
def sglang_0513() -> HostSglang:
    return ensure_release("0.5.13", WHEEL_CACHE / "envs")  # the same place verify uses in tests


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "qwen-like.jinja"
    path.write_text(QWEN_LIKE_TEMPLATE)
    return path


def results(host: HostSglang, template: Path, pythonpath: Path | None = None) -> dict[str, Any]:
    with adapter_endpoint(host.python, template, pythonpath or host.package) as url:
        return {r.name: r for r in run_suite(SmokeOptions(url), CHECKS)}


def test_vanilla_0513_fails_with_precise_reasons(sglang_0513: HostSglang, template: Path) -> None:
    found = results(sglang_0513, template)
    system = found["mid_conversation_system"]
    assert system.status is Status.FAILED
    assert "HTTP 400" in system.reason and "Input should be 'user' or 'assistant'" in system.reason
    tools = found["tool_stream_blocks"]
    assert tools.status is Status.FAILED
    assert "text_delta on a tool_use block" in tools.reason
    assert found["sse_grammar"].status is Status.FAILED


def test_the_schema_half_alone_still_fails_in_the_template(
    sglang_0513: HostSglang, template: Path, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    target = rootfs / str(SOURCE_ROOT / PROTOCOL).lstrip("/")
    target.parent.mkdir(parents=True)
    vanilla = adapter_files()[PROTOCOL].decode()
    target.write_text(
        vanilla.replace('Literal["user", "assistant"]', 'Literal["user", "assistant", "system"]')
    )
    package = overlay_package(sglang_0513.package, rootfs, str(SOURCE_ROOT), tmp_path / "site")
    system = results(sglang_0513, template, package)["mid_conversation_system"]
    assert system.status is Status.FAILED
    assert "HTTP 500" in system.reason  # schema accepts it; the template then refuses it


@pytest.fixture(scope="module")
def full_overlay(
    demo: Demo, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Sync the demo patchset onto a nightly built before any of its fixes landed."""
    history = demo.upstream.history
    first = history.git("rev-list", "--max-parents=0", "main")
    tree = history.source_tree(first, tmp_path_factory.mktemp("early") / "src")
    reference = f"{demo.image.rsplit(':', 1)[0]}:nightly-dev-cu13-20260601-{first[:8]}"
    build_image(docker_client, reference, {str(SOURCE_ROOT): tree}, with_busybox=False)
    out = tmp_path_factory.mktemp("overlays")
    done = CliRunner().invoke(
        app,
        ["sync", "--recipe", str(demo.recipe), "--image", reference, "--out", str(out), "--json"],
    )
    doc = json.loads(done.stdout)
    assert done.exit_code == 0, doc
    assert {p["pr"]: p["state"] for p in doc["patches"]} == {
        24294: "applied",
        26773: "applied",
        28906: "applied",
        25876: "applied",
    }
    yield Path(doc["overlay"])
    docker_client.images.remove(reference, force=True)


def test_verify_proves_the_whole_fixes_and_claude_code_agrees(
    full_overlay: Path,
    sglang_0513: HostSglang,
    claude_cli: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "verify.xml"
    done = CliRunner().invoke(
        app,
        [
            "verify",
            "--overlay",
            str(full_overlay),
            "--tier",
            "adapter",
            "--runtime",
            "host",
            "--sglang-version",
            "0.5.13",
            "--claude-cli",
            claude_cli,
            "--json",
            "--junit",
            str(junit),
        ],
    )
    doc = json.loads(done.stdout)
    assert done.exit_code == 0, doc
    overlay = {c["name"]: c for c in doc["checks"]}
    vanilla = {c["name"]: c for c in doc["vanilla"]}
    assert all(c["status"] != "failed" for c in overlay.values()), overlay
    for name in ("mid_conversation_system", "tool_stream_blocks", "claude_code"):
        assert vanilla[name]["status"] == "failed" and overlay[name]["status"] == "passed"
    assert (
        "Content block is not a text block" in vanilla["claude_code"]["reason"]
        or "400" in vanilla["claude_code"]["reason"]
    )
    verdicts = {p["patch"]: p for p in doc["patches"]}
    assert verdicts["sglang-demo/pr-24294"]["proven"] is True
    assert verdicts["sglang-demo/pr-26773"]["proven"] is True
    assert verdicts["sglang-demo/pr-25876"]["witness"] is None
    cases = ET.parse(junit).getroot().findall("testcase")
    assert {c.get("name") for c in cases} >= {"claude_code", "sse_grammar"}
    assert not any(c.find("failure") is not None for c in cases)
    assert "`sglang-demo/pr-26773`: proven" in summary.read_text()


def test_smoke_command_exit_code_and_junit_on_a_broken_endpoint(
    sglang_0513: HostSglang, template: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "smoke.xml"
    with adapter_endpoint(sglang_0513.python, template, sglang_0513.package) as url:
        done = subprocess.run(
            [
                str(REPO / ".venv/bin/patchkeeper"),
                "smoke",
                "--base-url",
                url,
                "--check",
                "tool_stream_blocks",
                "--check",
                "sse_grammar",
                "--json",
                "--junit",
                str(junit),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["passed"] is False
    failures = ET.parse(junit).getroot().findall("testcase/failure")
    assert any("text_delta on a tool_use block" in (f.get("message") or "") for f in failures)
