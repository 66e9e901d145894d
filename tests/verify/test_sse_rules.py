"""The stream grammar's rules pinned word for word: what a valid stream assembles, and
the exact violations (and only those) each broken stream gets."""

from __future__ import annotations

from typing import Any

import pytest

from patchkeeper.verify.replies import Usage
from patchkeeper.verify.sse import Event, parse_events, validate


def ev(kind: str, **data: Any) -> Event:
    return Event(kind, {"type": kind, **data})


def start(index: int, **block: Any) -> Event:
    return ev("content_block_start", index=index, content_block=block)


def delta(index: int | None, **body: Any) -> Event:
    if index is None:
        return ev("content_block_delta", delta=body)
    return ev("content_block_delta", index=index, delta=body)


def stop(index: int) -> Event:
    return ev("content_block_stop", index=index)


START = ev("message_start", message={"usage": {"input_tokens": 7, "output_tokens": 1}})
END = [
    ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3}),
    ev("message_stop"),
]


def test_a_valid_stream_assembles_every_block_and_the_usage() -> None:
    events = [
        START,
        start(0, type="thinking"),
        delta(0, type="thinking_delta", thinking="Let me "),
        delta(0, type="thinking_delta", thinking="see."),
        delta(0, type="signature_delta", signature="sig"),
        stop(0),
        start(1, type="text"),
        delta(1, type="text_delta", text="Hel"),
        delta(1, type="text_delta"),  # no text: adds nothing
        delta(1, type="text_delta", text="lo"),
        stop(1),
        start(2, type="tool_use", id="t", name="Bash", input={}),
        delta(2, type="input_json_delta", partial_json='{"cmd": '),
        delta(2, type="input_json_delta"),  # no partial_json: adds nothing
        delta(2, type="input_json_delta", partial_json='"ls"}'),
        stop(2),
        start(3, type="server_tool_use", id="s", name="web_search", input={}),
        delta(3, type="input_json_delta", partial_json='{"q": "x"}'),
        stop(3),
        start(4, type="tool_use", id="u", name="Read", input={"path": "a"}),  # no deltas
        stop(4),
        start(5, type="text", text=""),
        delta(5, type="text_delta", text=" world"),
        stop(5),
        *END,
    ]
    report = validate(events)
    assert report.violations == []
    assert report.blocks == [
        {"type": "thinking", "thinking": "Let me see."},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t", "name": "Bash", "input": {"cmd": "ls"}},
        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {"q": "x"}},
        {"type": "tool_use", "id": "u", "name": "Read", "input": {"path": "a"}},
        {"type": "text", "text": " world"},
    ]
    assert report.text() == "Hello world"
    assert [b["id"] for b in report.of_type("tool_use")] == ["t", "u"]
    assert report.stop_reason == "end_turn"
    assert report.usage == Usage(input_tokens=7, output_tokens=3)


@pytest.mark.parametrize(
    ("middle", "violations"),
    [
        (
            [start(0, type="text"), delta(5, type="text_delta", text="x"), stop(0)],
            ["event 2 (content_block_delta): text_delta for block 5, but the open block is 0"],
        ),
        (
            [delta(None, type="text_delta", text="x")],
            [
                "event 1 (content_block_delta): text_delta for block None, but the open block is None"
            ],
        ),
        (
            [start(0, type="text"), delta(0, type="emoji_delta", text="x"), stop(0)],
            ["event 2 (content_block_delta): unknown delta type 'emoji_delta'"],
        ),
        (
            [start(0, type="text"), delta(0, type="input_json_delta", partial_json="{}"), stop(0)],
            ["event 2 (content_block_delta): input_json_delta on a text block (index 0)"],
        ),
        (
            [
                start(0, type="tool_use", input={}),
                delta(0, type="input_json_delta", partial_json="[1]"),
                stop(0),
            ],
            ["event 3 (content_block_stop): tool input of block 0 is not a JSON object"],
        ),
        (
            [
                start(0, type="tool_use", input={}),
                delta(0, type="input_json_delta", partial_json="x" * 100),
                stop(0),
            ],
            [f"event 3 (content_block_stop): tool input of block 0 is not JSON: {'x' * 80!r}"],
        ),
        ([ev("mystery")], ["event 1 (mystery): unknown event type 'mystery'"]),
        ([START], ["event 1 (message_start): a second message_start"]),
        (
            [ev("error", error={"type": "overloaded_error"})],
            ["event 1 (error): error event: {'type': 'overloaded_error'}"],
        ),
    ],
)
def test_each_broken_stream_gets_exactly_its_violations(
    middle: list[Event], violations: list[str]
) -> None:
    assert validate([START, *middle, *END]).violations == violations


def test_the_text_of_a_block_with_a_bad_delta_is_left_alone() -> None:
    report = validate(
        [START, start(0, type="text"), delta(0, type="emoji_delta", text="x"), stop(0), *END]
    )
    assert report.blocks == [{"type": "text"}] and report.text() == ""


def test_an_empty_or_unfinished_stream_is_named_exactly() -> None:
    assert validate([]).violations == ["the stream is empty"]
    assert validate([START]).violations == ["the stream ended without message_stop"]


def test_data_that_is_not_an_object_is_reported_and_the_rest_kept() -> None:
    events, problems = parse_events([("a", "[1]"), ("b", "x" * 100), ("ping", '{"type": "ping"}')])
    assert events == [Event("ping", {"type": "ping"})]
    assert problems == [
        "event 0 (a): data is not a JSON object",
        f"event 1 (b): data is not JSON: {'x' * 80!r}",
    ]


def test_a_thinking_delta_without_thinking_adds_nothing() -> None:
    events = [START, start(0, type="thinking"), delta(0, type="thinking_delta"), stop(0), *END]
    assert validate(events).blocks == [{"type": "thinking", "thinking": ""}]


def test_every_event_after_message_stop_is_reported() -> None:
    report = validate([START, *END, ev("ping"), ev("message_stop")])
    assert report.violations == [
        "event 3 (ping): sent after message_stop",
        "event 4 (message_stop): sent after message_stop",
    ]
