"""Every smoke check against a scripted endpoint: silent when it is correct, and failing,
precisely, on the fault it exists for (see tests/verify/anthropic_double.py)."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.errors import ServerError
from patchkeeper.overlay.write import BASE_COMPOSE, OVERRIDE_COMPOSE
from patchkeeper.verify import reporting
from patchkeeper.verify.image_runtime import compose_service, new_run_id
from patchkeeper.verify.smoke import ALL, CheckResult, SmokeOptions, Status, run_suite
from tests.verify.anthropic_double import (
    BEHAVIOUR,
    GRAMMAR,
    ScriptedAnthropic,
    drip,
    drip_head,
    endless_pings,
    flood,
)

JSON = "application/json"
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0 and C1

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
        # Claude Code's turns, which the billing check replays, carry a role "system" entry.
        "reject_system": {"billing_header_prefix": Status.FAILED},
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


# ---- hostile servers, through the CLI: every check ends, fails precisely, prints text ----


def smoke_cli(server: ScriptedAnthropic, *args: str) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(app, ["smoke", "--base-url", server.url, "--json", *args])
    assert done.exit_code in (0, 1), done.output  # never 70: a bug in patchkeeper
    return done.exit_code, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_a_stream_that_only_ever_pings_fails_at_the_stream_deadline() -> None:
    route = "POST /v1/messages stream"
    with ScriptedAnthropic(hostile={route: endless_pings(0.05)}) as server:
        code, checks = smoke_cli(server, "--check", "thinking_disabled", "--stream-deadline", "1")
    assert code == 1
    reason = checks["thinking_disabled"]["reason"]
    assert reason.startswith("POST /v1/messages: still sending after 1.0 s, a reply's deadline")


def test_a_body_dripped_a_byte_at_a_time_fails_at_the_checks_deadline() -> None:
    body = json.dumps({"type": "message", "content": []}).encode()
    with ScriptedAnthropic(hostile={"POST /v1/messages": drip(body, 0.2)}) as server:
        code, checks = smoke_cli(server, "--check", "messages_basic", "--check-deadline", "1")
    assert code == 1
    reason = checks["messages_basic"]["reason"]
    assert reason.startswith("POST /v1/messages: still sending after 1.0 s, the check's deadline")
    assert server.sent["POST /v1/messages"] < len(body)  # it was not waited out


def test_a_status_line_and_headers_dripped_fail_at_the_checks_deadline() -> None:
    """Each read has its own timeout: only a deadline on the whole request ends this."""
    with ScriptedAnthropic(hostile={"POST /v1/messages": drip_head(0.1)}) as server:
        code, checks = smoke_cli(server, "--check", "messages_basic", "--check-deadline", "1")
    assert code == 1
    assert checks["messages_basic"]["reason"] == (
        "POST /v1/messages: still sending after 1.0 s, the check's deadline (0 bytes so far)"
    )


def test_a_huge_error_body_is_read_only_as_far_as_its_head() -> None:
    route, size = "POST /v1/messages", 256 * 2**20
    with ScriptedAnthropic(hostile={route: flood(500, size)}) as server:
        code, checks = smoke_cli(server, "--check", "messages_basic")
        sent = server.sent[route]
    assert code == 1
    assert checks["messages_basic"]["reason"] == f"POST /v1/messages: HTTP 500: {'x' * 300}"
    # What reached the socket before the client left: the head and the kernel's buffers.
    assert sent < size // 8, sent


def test_a_reply_larger_than_the_cap_fails_naming_the_cap() -> None:
    route = "GET /v1/models"
    with ScriptedAnthropic(hostile={route: flood(200, 2**20, "application/json")}) as server:
        code, checks = smoke_cli(server, "--check", "models_list", "--max-reply-bytes", "4096")
    assert code == 1
    assert checks["models_list"]["reason"] == (
        "GET /v1/models: the reply is larger than 4096 bytes"
    )


DEEP = "[" * 100_000 + "]" * 100_000
STREAM = "text/event-stream"


def events(*data: dict[str, Any] | str) -> str:
    """A stream's text: each event named by its type (raw text: a ping's name)."""
    named = [("ping", d) if isinstance(d, str) else (d["type"], json.dumps(d)) for d in data]
    return "".join(f"event: {name}\ndata: {text}\n\n" for name, text in named)


START_EVENT = {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
# Well-formed JSON of the wrong shape, one per reply the checks read: (route, content
# type, body, check, the start of its reason).
WRONG_SHAPES = {
    "models data a number": (
        "GET /v1/models",
        JSON,
        '{"data": 5}',
        "models_list",
        "GET /v1/models: response of the wrong shape: data: Input should be a valid array",
    ),
    "usage a list": (
        "POST /v1/messages",
        JSON,
        '{"type": "message", "content": [], "usage": [1, 2]}',
        "messages_basic",
        "POST /v1/messages: response of the wrong shape: usage: Input should be an object",
    ),
    "usage a string": (
        "POST /v1/messages",
        JSON,
        '{"type": "message", "content": [], "usage": "12"}',
        "prefix_cache",
        "POST /v1/messages: response of the wrong shape: usage: Input should be an object",
    ),
    "nested 100k deep": (
        "POST /v1/messages",
        JSON,
        '{"content": ' + DEEP + "}",
        "messages_basic",
        "POST /v1/messages: response is not JSON (recursion limit exceeded",
    ),
    "input_tokens a string": (
        "POST /v1/messages/count_tokens",
        JSON,
        '{"input_tokens": "12"}',
        "count_tokens",
        "POST /v1/messages/count_tokens: response of the wrong shape: input_tokens: Input "
        "should be a valid integer (got '12')",
    ),
    "server_args a list": (
        "GET /get_server_info",
        JSON,
        '{"server_args": ["--speculative-algorithm", "EAGLE"]}',
        "speculative",
        "GET /get_server_info: response of the wrong shape: server_args: Input should be an object",
    ),
    "content_block a string": (
        "POST /v1/messages stream",
        STREAM,
        events(START_EVENT, {"type": "content_block_start", "index": 0, "content_block": "x"}),
        "thinking_disabled",
        "stream breaks the grammar: event 1 (content_block_start): content_block: Input "
        "should be an object (got 'x')",
    ),
    "a block without type": (
        "POST /v1/messages stream",
        STREAM,
        events(START_EVENT, {"type": "content_block_start", "index": 0, "content_block": {}}),
        "thinking_disabled",
        "stream breaks the grammar: event 1 (content_block_start): content_block.type: Field "
        "required",
    ),
    "stream data nested 100k deep": (
        "POST /v1/messages stream",
        STREAM,
        events(START_EVENT, DEEP),
        "thinking_disabled",
        "stream breaks the grammar: event 1 (ping): data is not JSON",
    ),
    "stream usage a string": (
        "POST /v1/messages stream",
        STREAM,
        events({"type": "message_start", "message": {"usage": "many"}}),
        "mid_conversation_system",
        "stream breaks the grammar: event 0 (message_start): message.usage: Input should be "
        "an object (got 'many')",
    ),
}


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_a_reply_of_the_wrong_shape_fails_its_check_naming_endpoint_and_field(case: str) -> None:
    route, content_type, body, check, reason = WRONG_SHAPES[case]
    with ScriptedAnthropic(replies={route: (200, content_type, body)}) as server:
        code, checks = smoke_cli(server, "--check", check, "--speculative", "EAGLE")
    assert code == 1
    assert checks[check]["status"] == "failed", checks
    assert checks[check]["reason"].startswith(reason), checks[check]["reason"]


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x9b1m\x00\x0c[bold]not bold[/]"


def test_terminal_escapes_from_a_server_reach_neither_the_table_nor_the_junit_file(
    tmp_path: Path,
) -> None:
    junit = tmp_path / "smoke.xml"
    replies = {"POST /v1/messages": (500, "text/plain", ESCAPES)}
    with ScriptedAnthropic(replies=replies) as server:
        done = CliRunner().invoke(
            app,
            ["smoke", "--base-url", server.url, "--check", "messages_basic", "--junit", str(junit)],
        )
    assert done.exit_code == 1, done.output
    table = done.stdout
    assert not CONTROLS.search(table.replace("\n", "")), repr(table)
    assert "\\x1b]0;owned\\x07\\x1b[2J" in table and "[bold]not bold[/]" in table
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and failure.text is not None
    # What XML 1.0 cannot hold is shown, the rest kept.
    assert failure.text == "POST /v1/messages: HTTP 500: " + ESCAPES.replace(
        "\x1b", "\\x1b"
    ).replace("\x07", "\\x07").replace("\x00", "\\x00").replace("\x0c", "\\x0c")


def test_a_model_listing_that_drips_costs_the_first_model_only_its_deadline() -> None:
    """The suite asks /v1/models for a model to name before any check: a listing that
    never finishes leaves it "default", and the checks go on."""
    listing = json.dumps({"data": [{"id": "listed"}]}).encode()
    with ScriptedAnthropic(hostile={"GET /v1/models": drip(listing, 0.2)}) as server:
        code, checks = smoke_cli(server, "--check", "count_tokens", "--check-deadline", "1")
        models = [r["model"] for r in server.requests]
    assert code == 0 and checks["count_tokens"]["status"] == "passed", checks
    assert models == ["default", "default"]
