"""The strict stream grammar against valid streams and each violation it exists for."""

from __future__ import annotations

from typing import Any

import pytest

from patchkeeper.verify.sse import Event, parse_events, validate


def ev(kind: str, **data: Any) -> Event:
    return Event(kind, {"type": kind, **data})


START = ev("message_start", message={"id": "m", "usage": {"input_tokens": 7, "output_tokens": 0}})
END = [
    ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3}),
    ev("message_stop"),
]


def text_block(index: int, text: str) -> list[Event]:
    return [
        ev("content_block_start", index=index, content_block={"type": "text", "text": ""}),
        ev("content_block_delta", index=index, delta={"type": "text_delta", "text": text}),
        ev("content_block_stop", index=index),
    ]


def tool_block(index: int, name: str, parts: list[str]) -> list[Event]:
    return [
        ev(
            "content_block_start",
            index=index,
            content_block={"type": "tool_use", "id": f"t{index}", "name": name, "input": {}},
        ),
        *(
            ev(
                "content_block_delta",
                index=index,
                delta={"type": "input_json_delta", "partial_json": p},
            )
            for p in parts
        ),
        ev("content_block_stop", index=index),
    ]


def test_a_text_and_two_tool_calls_stream_is_valid() -> None:
    events = [
        START,
        ev("ping"),
        *text_block(0, "Let me check."),
        *tool_block(1, "Bash", ['{"command": ', '"ls"}']),
        *text_block(2, "\n"),
        *tool_block(3, "Read", ['{"path": "a"}']),
        ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
        ev("message_stop"),
    ]
    report = validate(events)
    assert report.ok, report.violations
    assert [b["type"] for b in report.blocks] == ["text", "tool_use", "text", "tool_use"]
    assert report.blocks[1]["input"] == {"command": "ls"}
    assert report.stop_reason == "tool_use" and report.usage.input_tokens == 7


def test_thinking_blocks_take_thinking_and_signature_deltas() -> None:
    events = [
        START,
        ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hmm"}),
        ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s"}),
        ev("content_block_stop", index=0),
        *text_block(1, "hi"),
        *END,
    ]
    report = validate(events)
    assert report.ok and report.of_type("thinking")[0]["thinking"] == "hmm"


# The upstream bug: a "\n" content chunk between two tool calls became a text_delta on the
# still-open tool_use block.
TEXT_ON_TOOL = [
    START,
    *tool_block(0, "Bash", ['{"command": "ls"}'])[:-1],
    ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "\n"}),
    ev("content_block_stop", index=0),
    ev("message_delta", delta={"stop_reason": "tool_use"}, usage={}),
    ev("message_stop"),
]


@pytest.mark.parametrize(
    ("events", "needle"),
    [
        (TEXT_ON_TOOL, "text_delta on a tool_use block (index 0)"),
        ([ev("ping"), START, *text_block(0, "x"), *END], "first event must be message_start"),
        ([START, *text_block(1, "x"), *END], "block index 1, expected 0"),
        ([START, *text_block(0, "x"), *text_block(0, "y"), *END], "block index 0, expected 1"),
        (
            [START, *text_block(0, "x")[:2], *text_block(1, "y"), *END],
            "starts while block 0 is still open",
        ),
        ([START, *text_block(0, "x")[:2], *END], "message_delta while block 0 is still open"),
        (
            [START, *text_block(0, "x"), ev("content_block_stop", index=0), *END],
            "stop for block 0, but the open block is None",
        ),
        (
            [START, *tool_block(0, "Bash", ['{"command": ', '"ls"']), *END],
            "tool input of block 0 is not JSON",
        ),
        ([START, *text_block(0, "x"), ev("message_stop")], "message_stop without a message_delta"),
        ([START, *text_block(0, "x"), *END, ev("ping")], "sent after message_stop"),
        ([START, *text_block(0, "x"), END[0]], "ended without message_stop"),
        (
            [
                START,
                *text_block(0, "x"),
                ev("message_delta", delta={"stop_reason": "tool_calls"}),
                ev("message_stop"),
            ],
            "stop_reason 'tool_calls'",
        ),
        (
            [
                START,
                Event(
                    "content_block_delta",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
                ),
                ev("content_block_stop", index=0),
                *END,
            ],
            "SSE event name 'content_block_delta' differs",
        ),
        ([START, ev("error", error={"type": "overloaded_error"}), *END], "error event"),
        (
            [START, *text_block(0, "x"), END[0], *text_block(1, "y")[:2], END[1]],
            "message_stop while block 1 is still open",
        ),
        ([START, *text_block(0, "x"), END[0], *END], "a second message_delta"),
        ([START, END[0], *text_block(0, "x"), END[1]], "content after message_delta"),
        (
            [
                START,
                ev(
                    "content_block_start",
                    index=0,
                    content_block={"type": "tool_use", "id": "t", "name": "Bash", "input": "ls"},
                ),
                ev("content_block_stop", index=0),
                *END,
            ],
            "tool input of block 0 is not a JSON object",
        ),
        (
            [START, *tool_block(0, "Bash", ['["ls"]']), *END],
            "tool input of block 0 is not a JSON object",
        ),
        (
            [
                START,
                *text_block(0, "x")[:2],
                ev(
                    "content_block_delta",
                    index=0,
                    delta={"type": "signature_delta", "signature": "s"},
                ),
                ev("content_block_stop", index=0),
                *END,
            ],
            "signature_delta on a text block (index 0)",
        ),
        ([START, START, *text_block(0, "x"), *END], "a second message_start"),
        (
            [START, ev("content_block_flush", index=0), *text_block(0, "x"), *END],
            "unknown event type 'content_block_flush'",
        ),
        (
            [
                START,
                *text_block(0, "x")[:2],
                ev("content_block_delta", index=0, delta={"type": "text_patch", "text": "y"}),
                ev("content_block_stop", index=0),
                *END,
            ],
            "unknown delta type 'text_patch'",
        ),
        (
            [
                START,
                *text_block(0, "x"),
                ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "y"}),
                *END,
            ],
            "text_delta for block 0, but the open block is None",
        ),
        ([], "the stream is empty"),
    ],
)
def test_each_violation_is_named(events: list[Event], needle: str) -> None:
    report = validate(events)
    assert not report.ok
    assert any(needle in v for v in report.violations), report.violations


def test_unparsable_data_is_reported() -> None:
    events, problems = parse_events([("message_start", "{not json"), ("ping", '{"type": "ping"}')])
    assert len(events) == 1 and "not JSON" in problems[0]


def test_each_rule_reports_only_its_own_violation() -> None:
    """A stream broken once is reported once: rules do not echo each other."""
    doubled = [START, *text_block(0, "x"), END[0], *END]
    assert validate(doubled).violations == ["event 5 (message_delta): a second message_delta"]
