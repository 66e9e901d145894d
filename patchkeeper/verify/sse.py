"""A strict grammar for Anthropic Messages streams.

Clients differ in how much they forgive: the official Python SDK silently drops
a `text_delta` sent to a `tool_use` block, while Claude Code fails the whole
turn with "Content block is not a text block". This validator forgives nothing
the Messages API never sends, so a stream that passes it is safe for both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DELTA_FOR_BLOCK = {
    "text_delta": {"text"},
    "citations_delta": {"text"},
    "input_json_delta": {"tool_use", "server_tool_use"},
    "thinking_delta": {"thinking"},
    "signature_delta": {"thinking"},
}
TOOL_BLOCKS = ("tool_use", "server_tool_use")
CONTENT_EVENTS = ("content_block_start", "content_block_delta", "content_block_stop")
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}


@dataclass(frozen=True)
class Event:
    """One SSE event: its `event:` name and parsed `data:` JSON."""

    name: str
    data: dict[str, Any]


@dataclass
class StreamReport:
    """What a stream contained and every way it broke the grammar."""

    violations: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)  # type, text, input, thinking
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.blocks if b["type"] == "text")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b["type"] == kind]


def parse_events(raw: Iterable[tuple[str, str]]) -> tuple[list[Event], list[str]]:
    """(event name, data text) pairs -> events, plus violations for unparsable data."""
    events, problems = [], []
    for position, (name, data) in enumerate(raw):
        try:
            payload = json.loads(data)
        except ValueError:
            problems.append(f"event {position} ({name}): data is not JSON: {data[:80]!r}")
            continue
        if not isinstance(payload, dict):
            problems.append(f"event {position} ({name}): data is not a JSON object")
            continue
        events.append(Event(name, payload))
    return events, problems


def validate(events: Iterable[Event]) -> StreamReport:
    """Hold a stream to the Messages API's event order, rule by rule.

    message_start once, first; then content blocks, each started, given deltas of its
    own kind and stopped before the next starts (ping anywhere); then exactly one
    message_delta with a stop reason, with no block open; then message_stop, last.
    Unknown event types are violations: a client that does not know them may drop
    content silently.
    """
    report = StreamReport()
    bad = report.violations.append
    open_index: int | None = None
    open_type = ""
    partial_json: dict[int, str] = {}
    started = stopped = delta_seen = False
    for position, event in enumerate(events):
        kind = event.data.get("type")
        where = f"event {position} ({kind})"
        if event.name and event.name != kind:
            bad(f"{where}: SSE event name {event.name!r} differs from data type {kind!r}")
        if stopped:
            bad(f"{where}: sent after message_stop")
            continue
        if not started:
            if kind != "message_start":
                bad(f"{where}: the first event must be message_start")
            started = True
            if kind == "message_start":
                report.usage.update((event.data.get("message") or {}).get("usage") or {})
                continue
        if kind == "ping":
            continue
        if delta_seen and kind in CONTENT_EVENTS:
            bad(f"{where}: content after message_delta")
        if kind == "error":
            bad(f"{where}: error event: {event.data.get('error')}")
        elif kind == "message_start":
            bad(f"{where}: a second message_start")
        elif kind == "content_block_start":
            index, block = event.data.get("index"), event.data.get("content_block") or {}
            if open_index is not None:
                bad(f"{where}: block {index} starts while block {open_index} is still open")
            if index != len(report.blocks):
                bad(f"{where}: block index {index}, expected {len(report.blocks)}")
            open_index, open_type = index, str(block.get("type"))
            report.blocks.append(dict(block))
            if open_type in TOOL_BLOCKS:
                if not isinstance(block.get("input", {}), dict):
                    bad(f"{where}: tool input of block {index} is not a JSON object")
                partial_json[len(report.blocks) - 1] = ""
        elif kind == "content_block_delta":
            index, delta = event.data.get("index"), event.data.get("delta") or {}
            delta_type = str(delta.get("type"))
            if index != open_index or open_index is None:  # no block open: nothing to add to
                bad(f"{where}: {delta_type} for block {index}, but the open block is {open_index}")
                continue
            allowed = DELTA_FOR_BLOCK.get(delta_type)
            if allowed is None:
                bad(f"{where}: unknown delta type {delta_type!r}")
            elif open_type not in allowed:
                bad(f"{where}: {delta_type} on a {open_type} block (index {index})")
            block = report.blocks[-1]  # the open block (index mismatches were reported at start)
            if delta_type == "text_delta":
                block["text"] = block.get("text", "") + str(delta.get("text", ""))
            elif delta_type == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
            elif delta_type == "input_json_delta" and len(report.blocks) - 1 in partial_json:
                partial_json[len(report.blocks) - 1] += str(delta.get("partial_json", ""))
        elif kind == "content_block_stop":
            index = event.data.get("index")
            if index != open_index:
                bad(f"{where}: stop for block {index}, but the open block is {open_index}")
            elif len(report.blocks) - 1 in partial_json:
                position = len(report.blocks) - 1
                _close_tool_input(report, position, partial_json[position], where)
            open_index = None
        elif kind == "message_delta":
            if delta_seen:
                bad(f"{where}: a second message_delta")
            if open_index is not None:
                bad(f"{where}: message_delta while block {open_index} is still open")
            reason = (event.data.get("delta") or {}).get("stop_reason")
            if reason not in STOP_REASONS:
                bad(f"{where}: stop_reason {reason!r} is not a Messages API stop reason")
            report.stop_reason = reason
            report.usage.update(event.data.get("usage") or {})
            delta_seen = True
        elif kind == "message_stop":
            if open_index is not None:
                bad(f"{where}: message_stop while block {open_index} is still open")
            if not delta_seen:
                bad(f"{where}: message_stop without a message_delta carrying a stop_reason")
            stopped = True
        else:
            bad(f"{where}: unknown event type {kind!r}")
    if not started:
        bad("the stream is empty")
    elif not stopped:
        bad("the stream ended without message_stop")
    return report


def _close_tool_input(report: StreamReport, index: int, raw: str, where: str) -> None:
    """A tool_use block's input is its start input, or the JSON its deltas assemble."""
    if raw == "":
        return
    try:
        value = json.loads(raw)
    except ValueError:
        report.violations.append(f"{where}: tool input of block {index} is not JSON: {raw[:80]!r}")
        return
    if not isinstance(value, dict):
        report.violations.append(f"{where}: tool input of block {index} is not a JSON object")
        return
    report.blocks[index]["input"] = value
