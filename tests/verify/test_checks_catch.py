"""Every smoke check against a scripted endpoint: silent when it is correct, and failing,
precisely, on the fault it exists for (see tests/verify/anthropic_double.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from patchkeeper.errors import ServerError
from patchkeeper.overlay.write import BASE_COMPOSE, OVERRIDE_COMPOSE
from patchkeeper.verify import reporting
from patchkeeper.verify.image_runtime import compose_service, new_run_id
from patchkeeper.verify.smoke import ALL, CheckResult, SmokeOptions, Status, run_suite
from patchkeeper.verify.witness import Verdict, unproven
from tests.verify.anthropic_double import BEHAVIOUR, GRAMMAR, ScriptedAnthropic

WITHOUT_CLI = [c for c in ALL if c != "claude_code"]
# The checks whose requests stream: any of them may fail with a broken stream.
STREAMING = {
    "messages_basic",
    "mid_conversation_system",
    "tool_stream_blocks",
    "thinking_disabled",
    "concurrency",
    "sse_grammar",
}


def suite(
    fault: str | None, names: list[str] = WITHOUT_CLI, **options: object
) -> dict[str, CheckResult]:
    with ScriptedAnthropic(fault) as server:
        found = run_suite(
            SmokeOptions(server.url, speculative_algorithm="NEXTN", prefix_rules=20, **options),  # type: ignore[arg-type]
            names,
        )
    return {r.name: r for r in found}


def not_passed(results: dict[str, CheckResult]) -> dict[str, Status]:
    return {n: r.status for n, r in results.items() if r.status is not Status.PASSED}


def test_a_correct_endpoint_passes_every_check() -> None:
    results = suite(None)
    assert set(results) == set(WITHOUT_CLI)
    assert not_passed(results) == {}, results


def test_claude_code_passes_a_correct_endpoint_and_fails_one_that_refuses_its_system_turn(
    claude_cli: str,
) -> None:
    names = ["claude_code"]
    good = suite(None, names, claude_cli=claude_cli, timeout=30)
    assert not_passed(good) == {}, good
    bad = suite("reject_system", names, claude_cli=claude_cli, timeout=30)["claude_code"]
    assert bad.status is Status.FAILED and "is_error=True" in bad.reason, bad


BEHAVIOUR_FAULTS = {
    "bad_nonstream_stop_reason": ("messages_basic", Status.FAILED, "stop_reason 'stop'"),
    "no_models": ("models_list", Status.FAILED, "lists no model ids"),
    "count_zero": ("count_tokens", Status.FAILED, "input_tokens is 0"),
    "count_constant": ("count_tokens", Status.FAILED, "did not count more input_tokens (7 -> 7)"),
    "drop_system": ("mid_conversation_system", Status.FAILED, "did not grow"),
    "reject_system": ("mid_conversation_system", Status.FAILED, "HTTP 400"),
    "one_tool_call": ("tool_stream_blocks", Status.NOT_RUN, "made 1 tool call(s)"),
    "tool_calls_end_turn": ("tool_stream_blocks", Status.FAILED, "stop_reason is 'end_turn'"),
    "think_tags_when_disabled": ("thinking_disabled", Status.FAILED, "think tags"),
    "thinking_block_when_disabled": ("thinking_disabled", Status.FAILED, "a thinking block"),
    "no_cache": ("prefix_cache", Status.FAILED, "cache_read_input_tokens=0"),
    "billing_in_prompt": ("billing_header_prefix", Status.FAILED, "billing line busts the prefix"),
    "concurrent_break": ("concurrency", Status.FAILED, "parallel streams broke the grammar"),
    "no_speculative": ("speculative", Status.FAILED, "speculative algorithm None"),
}


def test_every_behaviour_fault_has_a_case() -> None:
    assert set(BEHAVIOUR_FAULTS) == BEHAVIOUR
    assert {check for check, _, _ in BEHAVIOUR_FAULTS.values()} | {"sse_grammar"} == set(
        WITHOUT_CLI
    )


@pytest.mark.parametrize("fault", sorted(BEHAVIOUR_FAULTS))
def test_each_behaviour_fault_is_flagged_by_its_check_alone(fault: str) -> None:
    check, status, needle = BEHAVIOUR_FAULTS[fault]
    results = suite(fault)
    assert results[check].status is status, results[check]
    assert needle in results[check].reason, results[check]
    # A broken stream is also the grammar's business; nothing else may fail.
    also = {
        "concurrent_break": {"sse_grammar": Status.FAILED},
        "no_cache": {"billing_header_prefix": Status.FAILED},
    }.get(fault, {})
    assert not_passed(results) == {check: status, **also}, results


@pytest.mark.parametrize("fault", sorted(GRAMMAR))
def test_each_grammar_rule_broken_is_flagged(fault: str) -> None:
    results = suite(fault)
    grammar = results["sse_grammar"]
    assert grammar.status is Status.FAILED
    assert GRAMMAR[fault][1] in grammar.reason, grammar.reason
    assert set(not_passed(results)) <= STREAMING, results


def test_untrusted_reasons_are_printed_as_text_not_markup() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    hostile = CheckResult("messages_basic", Status.FAILED, "HTTP 500: [/x] [bold]not bold")
    reporting.print_table([hostile], console, "smoke: [/y]")
    printed = buffer.getvalue()
    assert "[/x] [bold]not bold" in printed and "smoke: [/y]" in printed


def verdict(witness: str | None, vanilla: Status, overlay: Status) -> Verdict:
    proven = witness is not None and vanilla is Status.FAILED and overlay is Status.PASSED
    retirable = witness is not None and vanilla is Status.PASSED
    return Verdict("p", witness, vanilla.value, overlay.value, proven, retirable)


def test_a_witness_that_proves_nothing_is_unproven() -> None:
    assert unproven([verdict("w", Status.FAILED, Status.PASSED)]) == []
    assert unproven([verdict("w", Status.PASSED, Status.PASSED)]) == []  # retirable
    assert unproven([verdict(None, Status.NOT_RUN, Status.NOT_RUN)]) == []  # no witness
    for vanilla, overlay in (
        (Status.NOT_RUN, Status.NOT_RUN),
        (Status.NOT_RUN, Status.PASSED),
        (Status.FAILED, Status.FAILED),
        (Status.FAILED, Status.NOT_RUN),
    ):
        weak = verdict("w", vanilla, overlay)
        assert unproven([weak]) == [weak], (vanilla, overlay)


def test_a_failing_compose_down_never_hides_the_failure_before_it(tmp_path: Path) -> None:
    """`up` fails on a broken compose file; `down`, reading the same file, fails too."""
    (tmp_path / BASE_COMPOSE).write_text("services: [not, a, mapping\n")
    (tmp_path / OVERRIDE_COMPOSE).write_text(json.dumps({"services": {}}))
    run_id = new_run_id()
    with (
        pytest.raises(ServerError, match="compose up failed") as caught,
        compose_service(None, tmp_path, "sglang", 1, run_id, tmp_path, 5.0),
    ):
        pass
    notes = getattr(caught.value, "__notes__", [])
    assert any(f"compose down of project pkverify-{run_id} failed" in n for n in notes), notes
