"""The adapter tier inside the image: the image's own python and SGLang 0.5.13, the
overlay bind-mounted where compose mounts it, files hashed inside the container."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.cli import app
from patchkeeper.demo.scenario import SERVING, SOURCE_ROOT
from patchkeeper.errors import ServerError
from patchkeeper.overlay.compose import overlay_mounts
from patchkeeper.overlay.lock import read_lock
from patchkeeper.verify import tiers
from patchkeeper.verify.image_runtime import LABEL, adapter_container, new_run_id


def verify(overlay: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(
        app, ["verify", "--overlay", str(overlay), "--tier", "adapter", "--json", *extra]
    )
    return done.exit_code, json.loads(done.stdout)


def leftovers(client: Any, run_id: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})
    return [c.name for c in found]


def test_in_image_vanilla_fails_precisely_and_the_synced_overlay_proves_both_witnesses(
    image_overlay: Path, claude_cli: str, docker_client: Any
) -> None:
    started = time.monotonic()
    code, doc = verify(image_overlay, "--runtime", "auto", "--claude-cli", claude_cli)
    print(f"in-image adapter tier, vanilla + overlay: {time.monotonic() - started:.1f} s")
    assert doc["runtime"] == "image"  # auto: the engine has the locked image
    vanilla = {c["name"]: c for c in doc["vanilla"]}
    system = vanilla["mid_conversation_system"]
    assert system["status"] == "failed"
    assert "HTTP 400" in system["reason"]
    assert "Input should be 'user' or 'assistant'" in system["reason"]
    tools = vanilla["tool_stream_blocks"]
    assert tools["status"] == "failed" and "text_delta on a tool_use block" in tools["reason"]
    assert vanilla["claude_code"]["status"] == "failed"

    checks = {c["name"]: c for c in doc["checks"]}
    assert code == 0, checks
    assert all(c["status"] != "failed" for c in checks.values()), checks
    files = checks["overlay_files"]
    assert files["status"] == "passed" and "3 file(s) match the lock" in files["reason"]
    for name in ("mid_conversation_system", "tool_stream_blocks", "claude_code", "sse_grammar"):
        assert checks[name]["status"] == "passed", checks[name]
    verdicts = {p["patch"]: p for p in doc["patches"]}
    assert verdicts["sglang-demo/pr-24294"]["proven"] is True
    assert verdicts["sglang-demo/pr-26773"]["proven"] is True
    assert leftovers(docker_client, doc["run_id"]) == []


def test_the_in_container_hash_catches_a_tampered_store_file(
    image_overlay: Path, docker_client: Any, tmp_path: Path
) -> None:
    copy = tmp_path / "overlay"
    shutil.copytree(image_overlay.resolve(), copy)
    served = copy / "rootfs" / str(SOURCE_ROOT / SERVING).lstrip("/")
    os.chmod(served, 0o644)
    served.write_bytes(served.read_bytes() + b"# edited after sync\n")

    code, doc = verify(copy, "--runtime", "image")
    checks = {c["name"]: c for c in doc["checks"]}
    assert code == 1
    files = checks["overlay_files"]
    assert files["status"] == "failed"
    assert f"{SOURCE_ROOT / SERVING}: " in files["reason"] and "!= lock" in files["reason"]
    assert leftovers(docker_client, doc["run_id"]) == []


def test_a_server_that_never_comes_up_is_reported_with_its_logs_and_removed(
    python_base: str, docker_client: Any, tmp_path: Path
) -> None:
    template = tmp_path / "template.jinja"
    template.write_text(QWEN_LIKE_TEMPLATE)
    run_id = new_run_id()
    # The base image has sglang's metadata but no checkout: the import fails.
    with (
        pytest.raises(ServerError, match="server exited; its last output") as err,
        adapter_container(docker_client, python_base, template, [], run_id),
    ):
        pass
    assert "sglang is not importable from this python" in str(err.value)
    assert leftovers(docker_client, run_id) == []


def test_an_interrupt_still_removes_the_container(
    python_nightly: str, docker_client: Any, tmp_path: Path
) -> None:
    template = tmp_path / "template.jinja"
    template.write_text(QWEN_LIKE_TEMPLATE)
    run_id = new_run_id()
    with (
        pytest.raises(KeyboardInterrupt),
        adapter_container(docker_client, python_nightly, template, [], run_id) as running,
    ):
        assert leftovers(docker_client, run_id) == [running.container.name]
        raise KeyboardInterrupt
    assert leftovers(docker_client, run_id) == []


def test_in_image_verify_mounts_the_overlay_read_only(
    image_overlay: Path, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server under test must not be able to change the overlay it is proving: the
    real containers' mounts, looked at while the checks run, are all read-only."""
    seen: list[tuple[str, list[dict[str, Any]]]] = []
    suite = tiers._adapter_suite

    def looking(url: str, settings: Any, lock: Any) -> Any:
        for container in docker_client.containers.list(filters={"label": LABEL}):
            seen.append((container.labels[LABEL], container.attrs["Mounts"]))
        return suite(url, settings, lock)

    monkeypatch.setattr(tiers, "_adapter_suite", looking)
    code, doc = verify(image_overlay, "--runtime", "image")
    assert code == 0, doc
    mounts = [m for run_id, found in seen if run_id == doc["run_id"] for m in found]
    targets = {m.target for m in overlay_mounts(read_lock(image_overlay), image_overlay)}
    assert targets and targets <= {m["Destination"] for m in mounts}, mounts
    assert [m["Destination"] for m in mounts if m["RW"]] == []
