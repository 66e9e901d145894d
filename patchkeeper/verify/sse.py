"""A strict grammar for Anthropic Messages streams.

Clients differ in how much they forgive: the official Python SDK silently drops
a `text_delta` sent to a `tool_use` block, while Claude Code fails the whole
turn with "Content block is not a text block". This validator forgives nothing
the Messages API never sends, so a stream that passes it is safe for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import StrictInt, StrictStr, TypeAdapter, ValidationError

from patchkeeper.verify.replies import Shape, Usage, problem

# Any JSON value, parsed by pydantic's parser, which bounds nesting depth; its errors
# are ValueErrors.
_JSON: TypeAdapter[Any] = TypeAdapter(Any)
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
    usage: Usage = field(default_factory=Usage)

    @property
    def ok(self) -> bool:
        return not self.violations

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.blocks if b["type"] == "text")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b["type"] == kind]


def parse_events(raw: Iterable[tuple[str, str]]) -> tuple[list[Event], list[str]]:
    """(event name, data text) pairs -> events, plus violations for unparsable data.
    The parser bounds nesting depth: data nested too deep is unparsable, not a crash."""
    events, problems = [], []
    for position, (name, data) in enumerate(raw):
        try:
            payload = _JSON.validate_json(data)
        except ValueError:
            problems.append(f"event {position} ({name}): data is not JSON: {data[:80]!r}")
            continue
        if not isinstance(payload, dict):
            problems.append(f"event {position} ({name}): data is not a JSON object")
            continue
        events.append(Event(name, payload))
    return events, problems


class _StartMessage(Shape):
    usage: Usage = Usage()


class _MessageStart(Shape):
    message: _StartMessage = _StartMessage()


class _ContentBlock(Shape):
    type: StrictStr
    text: StrictStr | None = None
    thinking: StrictStr | None = None


class _BlockStart(Shape):
    index: StrictInt | None = None
    content_block: _ContentBlock


class _Delta(Shape):
    type: StrictStr | None = None
    text: StrictStr = ""
    thinking: StrictStr = ""
    partial_json: StrictStr = ""


class _BlockDelta(Shape):
    index: StrictInt | None = None
    delta: _Delta = _Delta()


class _BlockStop(Shape):
    index: StrictInt | None = None


class _StopReason(Shape):
    stop_reason: StrictStr | None = None


class _MessageDelta(Shape):
    delta: _StopReason = _StopReason()
    usage: Usage = Usage()


# The fields of each event the grammar reads, typed: an event of the wrong shape is a
# violation naming the field, and the rules below read only checked values.
SHAPES: dict[str, type[Shape]] = {
    "message_start": _MessageStart,
    "content_block_start": _BlockStart,
    "content_block_delta": _BlockDelta,
    "content_block_stop": _BlockStop,
    "message_delta": _MessageDelta,
}


def validate(events: Iterable[Event]) -> StreamReport:
    """Hold a stream to the Messages API's event order, rule by rule.

    message_start once, first; then content blocks, each started, given deltas of its
    own kind and stopped before the next starts (ping anywhere); then exactly one
    message_delta with a stop reason, with no block open; then message_stop, last.
    Unknown event types are violations: a client that does not know them may drop
    content silently. An event whose fields are of the wrong shape is a violation and
    otherwise ignored.
    """
    grammar = _Grammar()
    for position, event in enumerate(events):
        grammar.feed(position, event)
    return grammar.finish()


@dataclass
class _Grammar:
    """The stream so far: which block is open, and what has been seen. `feed` takes one
    event through the rules that hold for any event, then its type's handler."""

    report: StreamReport = field(default_factory=StreamReport)
    open_index: int | None = None
    open_type: str = ""
    partial_json: dict[int, str] = field(default_factory=dict)  # tool blocks' input so far
    started: bool = False
    stopped: bool = False
    delta_seen: bool = False

    def bad(self, violation: str) -> None:
        self.report.violations.append(violation)

    def feed(self, position: int, event: Event) -> None:
        kind = event.data.get("type")
        where = f"event {position} ({kind})"
        if event.name and event.name != kind:
            self.bad(f"{where}: SSE event name {event.name!r} differs from data type {kind!r}")
        if self.stopped:
            self.bad(f"{where}: sent after message_stop")
            return
        shape = SHAPES.get(kind) if isinstance(kind, str) else None
        try:
            data = shape.model_validate(event.data) if shape else None
        except ValidationError as err:
            self.bad(f"{where}: {problem(err)}")
            self.started = True  # a stream, if a broken one
            return
        if not self.started:
            if kind != "message_start":
                self.bad(f"{where}: the first event must be message_start")
            self.started = True
            if isinstance(data, _MessageStart):
                self.report.usage = _merged(self.report.usage, data.message.usage)
                return
        if kind == "ping":
            return
        if self.delta_seen and kind in CONTENT_EVENTS:
            self.bad(f"{where}: content after message_delta")
        if kind == "error":
            self.bad(f"{where}: error event: {str(event.data.get('error'))[:200]}")
        elif kind == "message_start":
            self.bad(f"{where}: a second message_start")
        elif isinstance(data, _BlockStart):
            self._block_start(where, data, event.data["content_block"])
        elif isinstance(data, _BlockDelta):
            self._block_delta(where, data)
        elif isinstance(data, _BlockStop):
            self._block_stop(where, data)
        elif isinstance(data, _MessageDelta):
            self._message_delta(where, data)
        elif kind == "message_stop":
            self._message_stop(where)
        else:
            self.bad(f"{where}: unknown event type {kind!r}")

    def _block_start(self, where: str, data: _BlockStart, block: dict[str, Any]) -> None:
        blocks = self.report.blocks
        if self.open_index is not None:
            self.bad(
                f"{where}: block {data.index} starts while block {self.open_index} is still open"
            )
        if data.index != len(blocks):
            self.bad(f"{where}: block index {data.index}, expected {len(blocks)}")
        self.open_index, self.open_type = data.index, data.content_block.type
        blocks.append(dict(block))
        if self.open_type in TOOL_BLOCKS:
            if not isinstance(block.get("input", {}), dict):
                self.bad(f"{where}: tool input of block {data.index} is not a JSON object")
            self.partial_json[len(blocks) - 1] = ""

    def _block_delta(self, where: str, data: _BlockDelta) -> None:
        index, delta = data.index, data.delta
        delta_type = str(delta.type)
        if index != self.open_index or self.open_index is None:  # nothing open to add to
            self.bad(
                f"{where}: {delta_type} for block {index}, but the open block is {self.open_index}"
            )
            return
        allowed = DELTA_FOR_BLOCK.get(delta_type)
        if allowed is None:
            self.bad(f"{where}: unknown delta type {delta_type!r}")
        elif self.open_type not in allowed:
            self.bad(f"{where}: {delta_type} on a {self.open_type} block (index {index})")
        last = len(self.report.blocks) - 1
        block = self.report.blocks[last]  # the open one (index mismatches reported at start)
        if delta_type == "text_delta":
            block["text"] = (block.get("text") or "") + delta.text
        elif delta_type == "thinking_delta":
            block["thinking"] = (block.get("thinking") or "") + delta.thinking
        elif delta_type == "input_json_delta" and last in self.partial_json:
            self.partial_json[last] += delta.partial_json

    def _block_stop(self, where: str, data: _BlockStop) -> None:
        last = len(self.report.blocks) - 1
        if data.index != self.open_index:
            self.bad(
                f"{where}: stop for block {data.index}, but the open block is {self.open_index}"
            )
        elif last in self.partial_json:
            _close_tool_input(self.report, last, self.partial_json[last], where)
        self.open_index = None

    def _message_delta(self, where: str, data: _MessageDelta) -> None:
        if self.delta_seen:
            self.bad(f"{where}: a second message_delta")
        if self.open_index is not None:
            self.bad(f"{where}: message_delta while block {self.open_index} is still open")
        reason = data.delta.stop_reason
        if reason not in STOP_REASONS:
            self.bad(f"{where}: stop_reason {reason!r} is not a Messages API stop reason")
        self.report.stop_reason = reason
        self.report.usage = _merged(self.report.usage, data.usage)
        self.delta_seen = True

    def _message_stop(self, where: str) -> None:
        if self.open_index is not None:
            self.bad(f"{where}: message_stop while block {self.open_index} is still open")
        if not self.delta_seen:
            self.bad(f"{where}: message_stop without a message_delta carrying a stop_reason")
        self.stopped = True

    def finish(self) -> StreamReport:
        if not self.started:
            self.bad("the stream is empty")
        elif not self.stopped:
            self.bad("the stream ended without message_stop")
        return self.report


def _merged(usage: Usage, later: Usage) -> Usage:
    """A stream's usage: what message_start said, updated by what message_delta says."""
    return usage.model_copy(update=later.model_dump(exclude_unset=True))


def _close_tool_input(report: StreamReport, index: int, raw: str, where: str) -> None:
    """A tool_use block's input is its start input, or the JSON its deltas assemble."""
    if raw == "":
        return
    try:
        value = _JSON.validate_json(raw)
    except ValueError:
        report.violations.append(f"{where}: tool input of block {index} is not JSON: {raw[:80]!r}")
        return
    if not isinstance(value, dict):
        report.violations.append(f"{where}: tool input of block {index} is not a JSON object")
        return
    report.blocks[index]["input"] = value
