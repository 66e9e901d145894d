"""Witness rules on the path users run: `patchkeeper verify` judges each patch's witness
with `witness.judge` over the vanilla and overlaid runs, and exits 1 when a witness
proves nothing. Only the serving is replaced: each run's adapter is the scripted
endpoint (vanilla with a fault, the overlay correct); the checks, the judging and the
exit code are the command's own."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.overlay.lock import LOCK_NAME, LockedPatch
from patchkeeper.verify import tiers
from patchkeeper.verify.sglang_env import HostSglang
from patchkeeper.verify.smoke import CheckResult, Status
from patchkeeper.verify.witness import judge, unproven
from tests.overlay.locks import make_lock
from tests.verify.anthropic_double import ScriptedAnthropic


def patch(witness: str | None, pr: int = 1) -> dict[str, Any]:
    return {
        "id": f"set/pr-{pr}",
        "patchset": "set",
        "pr": pr,
        "diff_file": None,
        "state": "applied",
        "via": "pr",
        "pr_state": "open",
        "title": None,
        "why": "",
        "witness": witness,
        "head": None,
        "merge_commit": None,
        "base": None,
        "diff_sha256": "0" * 64,
        "hunks": {"applied": 1, "present": 0, "conflict": 0},
        "files": [],
    }


def overlay_with(tmp_path: Path, *patches: dict[str, Any]) -> Path:
    patchset = {
        "name": "set",
        "upstream": "https://example.invalid/sglang.git",
        "branch": "main",
        "source_root": "/sgl-workspace/sglang",
        "commit": "4" * 40,
    }
    lock = make_lock("f" * 64, patchsets=[patchset], patches=list(patches))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / LOCK_NAME).write_text(lock.model_dump_json())
    return overlay


def verify_against(
    monkeypatch: pytest.MonkeyPatch,
    overlay: Path,
    vanilla_fault: str | None,
    overlay_fault: str | None = None,
    *options: str,
) -> tuple[int, dict[str, Any]]:
    """`verify --runtime host` with vanilla served by the endpoint with `vanilla_fault`
    and the overlay by one with `overlay_fault`."""
    vanilla_package = overlay.parent / "vanilla-package"
    host = HostSglang(Path(sys.executable), vanilla_package, "0.5.13", "a scripted endpoint")
    with ExitStack() as stack:
        vanilla = stack.enter_context(ScriptedAnthropic(vanilla_fault))
        overlaid = stack.enter_context(ScriptedAnthropic(overlay_fault))

        @contextmanager
        def served(_python: Path, _template: Path, pythonpath: Path | None) -> Iterator[str]:
            yield vanilla.url if pythonpath == vanilla_package else overlaid.url

        monkeypatch.setattr(tiers, "host_sglang", lambda _lock, _settings: host)
        monkeypatch.setattr(tiers, "overlay_package", lambda _pkg, _root, _src, dest: dest)
        monkeypatch.setattr(tiers, "adapter_endpoint", served)
        done = CliRunner().invoke(
            app, ["verify", "--overlay", str(overlay), "--runtime", "host", "--json", *options]
        )
    doc: dict[str, Any] = json.loads(done.stdout)
    return done.exit_code, doc


def test_a_witness_failing_on_vanilla_and_passing_overlaid_proves_its_patch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overlay = overlay_with(tmp_path, patch("mid_conversation_system"))
    code, doc = verify_against(monkeypatch, overlay, "reject_system")
    (verdict,) = doc["patches"]
    assert (verdict["vanilla"], verdict["overlay"], verdict["proven"]) == (
        "failed",
        "passed",
        True,
    )
    assert code == 0 and doc["unproven"] == [], doc


def test_a_witness_vanilla_merely_did_not_pass_proves_nothing_and_verify_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Vanilla makes one tool call: tool_stream_blocks is not run there, not failed.
    overlay = overlay_with(tmp_path, patch("tool_stream_blocks"))
    code, doc = verify_against(monkeypatch, overlay, "one_tool_call")
    (verdict,) = doc["patches"]
    assert (verdict["vanilla"], verdict["overlay"]) == ("not run", "passed")
    assert verdict["proven"] is False and verdict["retirable"] is False
    assert doc["unproven"] == ["set/pr-1"]
    assert code == 1 and doc["passed"] is False


def test_a_witness_run_on_neither_side_proves_nothing_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overlay = overlay_with(tmp_path, patch("tool_stream_blocks"))
    code, doc = verify_against(monkeypatch, overlay, "one_tool_call", "one_tool_call")
    assert [c["status"] for c in doc["checks"] if c["status"] == "failed"] == []
    assert doc["unproven"] == ["set/pr-1"] and code == 1
    code, doc = verify_against(
        monkeypatch, overlay, "one_tool_call", "one_tool_call", "--allow-unproven"
    )
    assert doc["unproven"] == ["set/pr-1"] and code == 0


def test_a_witness_passing_on_vanilla_shows_its_patch_retirable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overlay = overlay_with(tmp_path, patch("mid_conversation_system"))
    code, doc = verify_against(monkeypatch, overlay, None)
    assert doc["patches"][0]["retirable"] is True and doc["unproven"] == []
    assert code == 0


@pytest.mark.parametrize(
    ("vanilla", "overlay", "proven", "retirable"),
    [
        (Status.FAILED, Status.PASSED, True, False),
        (Status.PASSED, Status.PASSED, False, True),
        (Status.PASSED, Status.FAILED, False, True),
        (Status.NOT_RUN, Status.PASSED, False, False),
        (Status.NOT_RUN, Status.NOT_RUN, False, False),
        (Status.FAILED, Status.FAILED, False, False),
        (Status.FAILED, Status.NOT_RUN, False, False),
    ],
)
def test_judge_proves_a_patch_only_when_its_witness_failed_on_vanilla_and_passes_overlaid(
    vanilla: Status, overlay: Status, proven: bool, retirable: bool
) -> None:
    patches = [LockedPatch.model_validate(patch("w")), LockedPatch.model_validate(patch(None, 2))]
    (verdict, no_witness) = judge(patches, [CheckResult("w", vanilla)], [CheckResult("w", overlay)])
    assert (verdict.proven, verdict.retirable) == (proven, retirable)
    assert unproven([verdict]) == ([] if proven or retirable else [verdict])
    assert (no_witness.proven, no_witness.retirable, unproven([no_witness])) == (False, False, [])


def test_a_missing_witness_run_is_not_run_on_both_sides() -> None:
    (verdict,) = judge([LockedPatch.model_validate(patch("w"))], [], [])
    assert (verdict.vanilla, verdict.overlay, verdict.proven) == ("not run", "not run", False)
    assert unproven([verdict]) == [verdict]
