"""A scripted Anthropic Messages endpoint that is correct unless told which fault to have.

The smoke suite's own tests run against it: with no fault every check must pass (no
false failures); with one fault the check written for it must fail (no false
passes). Faults are named; `GRAMMAR` faults rewrite every stream's events, each
breaking one rule of the stream grammar, the others break one behaviour.

Correct behaviour, kept small: one model; input tokens are the words of the prompt
(system, then each message with its role), so a dropped system turn counts less;
a repeated prompt prefix is reported as `cache_read_input_tokens`; a request that
offers the suite's tools gets two tool calls with a text block between them; others
get a thinking block (unless thinking is disabled) and a text answer. As the real API
does, it refuses a request without `x-api-key` (401) or `anthropic-version` (400), and
one that is no well-formed Messages request (400; see `malformed`).

Edge cases beyond the named faults: `replies` serves a canned (status, content type,
body) for a route ("GET /v1/models", "POST /v1/messages", "POST /v1/messages stream",
...), `stall` holds a route's reply until the server closes, `hostile` hands a route
to a writer that misbehaves on the wire (`endless_pings`, `drip`, `drip_head`,
`flood`), and
subclasses may override any of the behaviour methods (`models`, `message`, `count`,
`stream_events`, ...) to send what a broken server sends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.oci import BackgroundHTTPServer

Events = list[tuple[str, dict[str, Any]]]
MODEL = "scripted-model"
SUITE_TOOLS = {"get_weather", "get_time"}
BILLING = "x-anthropic-billing-header:"


def _words(value: Any) -> list[str]:
    """Every text a request carries, split into words, in order."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [w for item in value for w in _words(item)]
    if isinstance(value, dict):
        return [w for key in ("text", "content", "thinking") for w in _words(value.get(key))]
    return []


def _prompt(body: dict[str, Any], drop_system: bool, billing: bool = False) -> list[str]:
    """The prompt as words. Claude Code's per-turn billing line is kept out of it (as a
    server must, for prefix caching to work) unless `billing`."""
    system = body.get("system")
    if isinstance(system, list) and not billing:
        system = [b for b in system if not str(b.get("text", "")).startswith(BILLING)]
    tokens = ["<system>", *_words(system)]
    for message in body.get("messages") or []:
        if drop_system and message.get("role") == "system":
            continue
        tokens += [f"<{message.get('role')}>", *_words(message.get("content"))]
    return tokens


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


ROLES = {"user", "assistant", "system"}  # "system" as Claude Code sends it mid-conversation
REQUIRED = ("model", "max_tokens", "messages")


def malformed(body: dict[str, Any], path: str) -> str | None:
    """What the real API would refuse in a request's body, or None."""
    fields = ("model", "messages") if path.endswith("count_tokens") else REQUIRED
    missing = [f for f in fields if f not in body]
    if missing:
        return f"{missing[0]}: Field required"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), (str, list)):
            return f"messages.{i}.content: Field required"
    system = body.get("system", "")
    if not isinstance(system, str) and not all(b.get("type") == "text" for b in system):
        return "system: Input should be a valid string or a list of text blocks"
    return None


def _counting(body: dict[str, Any]) -> bool:
    """Whether a request is one of the concurrency check's ("Count to N.")."""
    messages = body.get("messages") or [{}]
    return str(messages[0].get("content", "")).startswith("Count to")


def _tool_block(index: int, name: str) -> Events:
    start = {"type": "tool_use", "id": f"toolu_{index:02d}", "name": name, "input": {}}
    return [
        ("content_block_start", {"index": index, "content_block": start}),
        *(
            (
                "content_block_delta",
                {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}},
            )
            for part in ('{"city": ', '"Paris"}')
        ),
        ("content_block_stop", {"index": index}),
    ]


def _text_block(index: int, text: str) -> Events:
    return [
        ("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"index": index}),
    ]


def _thinking_block(index: int) -> Events:
    block = {"type": "thinking", "thinking": ""}
    return [
        ("content_block_start", {"index": index, "content_block": block}),
        (
            "content_block_delta",
            {"index": index, "delta": {"type": "thinking_delta", "thinking": "Short."}},
        ),
        (
            "content_block_delta",
            {"index": index, "delta": {"type": "signature_delta", "signature": "c2ln"}},
        ),
        ("content_block_stop", {"index": index}),
    ]


def _block_after_delta(events: Events) -> Events:
    """Move message_delta before the last block (content after message_delta)."""
    delta = next(e for e in events if e[0] == "message_delta")
    rest = [e for e in events if e[0] not in ("message_delta", "message_stop")]
    last_start = max(i for i, (k, _) in enumerate(rest) if k == "content_block_start")
    return [*rest[:last_start], delta, *rest[last_start:], ("message_stop", {})]


def _open_at_stop(events: Events) -> Events:
    """Drop the last block's stop: it is still open at message_delta and message_stop."""
    last_stop = max(i for i, (k, _) in enumerate(events) if k == "content_block_stop")
    return [e for i, e in enumerate(events) if i != last_stop]


def _signature_on_text(events: Events) -> Events:
    at = next(
        i
        for i, (k, d) in enumerate(events)
        if k == "content_block_delta" and d["delta"]["type"] == "text_delta"
    )
    index = events[at][1]["index"]
    signature = ("content_block_delta", {"index": index, "delta": {"type": "signature_delta"}})
    return [*events[: at + 1], signature, *events[at + 1 :]]


def _text_on_tool(events: Events) -> Events:
    """The upstream bug: the text between two tool calls lands on the open tool block."""
    tools = [
        d["index"]
        for k, d in events
        if k == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    if not tools:
        return events
    stop = events.index(("content_block_stop", {"index": tools[0]}))
    stray = (
        "content_block_delta",
        {"index": tools[0], "delta": {"type": "text_delta", "text": "\n"}},
    )
    return [*events[:stop], stray, *events[stop:]]


def _string_tool_input(events: Events) -> Events:
    out: Events = []
    for kind, data in events:
        block = data.get("content_block") or {}
        if kind == "content_block_start" and block.get("type") == "tool_use":
            data = {**data, "content_block": {**block, "input": "Paris"}}
        elif kind == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            continue
        out.append((kind, data))
    return out


# Each rewrites a correct stream so that it breaks one rule; the value is a phrase the
# grammar's violation must contain.
GRAMMAR: dict[str, tuple[Callable[[Events], Events], str]] = {
    "grammar_no_message_stop": (lambda e: e[:-1], "ended without message_stop"),
    "grammar_block_open_at_stop": (_open_at_stop, "message_stop while block"),
    "grammar_two_message_deltas": (
        lambda e: [*e[:-1], e[-2], e[-1]],
        "a second message_delta",
    ),
    "grammar_content_after_message_delta": (_block_after_delta, "content after message_delta"),
    "grammar_second_message_start": (lambda e: [e[0], *e], "a second message_start"),
    "grammar_unknown_event": (
        lambda e: [e[0], ("content_block_flush", {}), *e[1:]],
        "unknown event type 'content_block_flush'",
    ),
    "grammar_signature_on_text": (_signature_on_text, "signature_delta on a text block"),
    "grammar_first_not_message_start": (
        lambda e: [("ping", {}), *e],
        "the first event must be message_start",
    ),
    "grammar_event_name_mismatch": (
        lambda e: [e[0], ("content_block_delta", {"type": "ping"}), *e[1:]],
        "SSE event name 'content_block_delta' differs from data type 'ping'",
    ),
    "grammar_error_event": (
        lambda e: [e[0], ("error", {"error": {"type": "overloaded_error"}}), *e[1:]],
        "error event",
    ),
    "grammar_text_on_tool": (_text_on_tool, "text_delta on a tool_use block"),
    "grammar_tool_input_not_object": (_string_tool_input, "is not a JSON object"),
}

BEHAVIOUR = {
    "bad_nonstream_stop_reason",  # messages_basic: OpenAI's "stop" in a Messages reply
    "no_models",  # models_list: an empty list
    "count_zero",  # count_tokens: input_tokens 0
    "count_constant",  # count_tokens: the same count for any prompt
    "drop_system",  # mid_conversation_system: accepted, silently dropped
    "reject_system",  # mid_conversation_system (and Claude Code): 400
    "one_tool_call",  # tool_stream_blocks: cannot show the bug: not exercised
    "tool_calls_end_turn",  # tool_stream_blocks: tool calls, stop_reason end_turn
    "think_tags_when_disabled",  # thinking_disabled: reasoning leaks as <think> text
    "thinking_block_when_disabled",  # thinking_disabled: a thinking block anyway
    "no_cache",  # prefix_cache, billing_header_prefix: never reports a cache hit
    "billing_in_prompt",  # billing_header_prefix: the per-turn billing line heads the prompt
    "concurrent_break",  # concurrency: a stream breaks when another is in flight
    "no_speculative",  # speculative: the server runs none
}
FAULTS = {*GRAMMAR, *BEHAVIOUR}


Reply = tuple[int, str, str]  # status, content type, body
# Writes a whole reply to the handler's socket, misbehaving; the server's `sent` counts
# the body bytes that reached the socket, per route.
Writer = Callable[[BaseHTTPRequestHandler, "ScriptedAnthropic", str], None]


def _head(handler: BaseHTTPRequestHandler, status: int, content_type: str, length: int) -> None:
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(length))
    handler.end_headers()
    handler.wfile.flush()


def endless_pings(every: float, for_at_most: float = 20.0) -> Writer:
    """A stream that starts, then only pings, every `every` s: a client without a total
    deadline waits `for_at_most` s, then sees a stream that never stopped."""

    def write(handler: BaseHTTPRequestHandler, server: ScriptedAnthropic, route: str) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("connection", "close")
        handler.end_headers()
        start = {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}
        handler.wfile.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        ends = time.monotonic() + for_at_most
        while time.monotonic() < ends and not server._closing.wait(every):
            handler.wfile.write(b'event: ping\ndata: {"type": "ping"}\n\n')
            handler.wfile.flush()
            server.count_sent(route, 1)

    return write


def _drip_bytes(
    handler: BaseHTTPRequestHandler,
    server: ScriptedAnthropic,
    route: str,
    data: bytes,
    every: float,
) -> None:
    """Send `data` one byte every `every` s, until the server closes."""
    for i in range(len(data)):
        if server._closing.wait(every):
            return
        handler.wfile.write(data[i : i + 1])
        handler.wfile.flush()
        server.count_sent(route, 1)


def drip(body: bytes, every: float) -> Writer:
    """A 200 JSON reply whose body comes one byte every `every` s."""

    def write(handler: BaseHTTPRequestHandler, server: ScriptedAnthropic, route: str) -> None:
        _head(handler, 200, "application/json", len(body))
        _drip_bytes(handler, server, route, body, every)

    return write


def drip_head(every: float) -> Writer:
    """A reply whose status line and headers come one byte every `every` s."""

    def write(handler: BaseHTTPRequestHandler, server: ScriptedAnthropic, route: str) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"x-pad: y\r\n" * 50
        _drip_bytes(handler, server, route, head, every)

    return write


def flood(status: int, size: int, content_type: str = "text/plain") -> Writer:
    """A reply of `size` bytes ('x' after a short head), written as fast as it is read."""

    def write(handler: BaseHTTPRequestHandler, server: ScriptedAnthropic, route: str) -> None:
        _head(handler, status, content_type, size)
        chunk = b"x" * 65536
        sent = 0
        while sent < size and not server._closing.is_set():
            part = chunk[: size - sent]
            handler.wfile.write(part)
            sent += len(part)
            server.count_sent(route, len(part))

    return write


class ScriptedAnthropic(BackgroundHTTPServer):
    """The endpoint, with at most one fault from FAULTS; `requests` logs every body,
    `routes` every request's route and `headers` its headers (lower-case names)."""

    def __init__(
        self,
        fault: str | None = None,
        *,
        replies: dict[str, Reply] | None = None,
        stall: frozenset[str] = frozenset(),
        hostile: dict[str, Writer] | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        self.replies = replies or {}
        self.stall = stall
        self.hostile = hostile or {}
        self.sent: dict[str, int] = {}
        self._closing = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.routes: list[str] = []
        self._prompts: list[list[str]] = []
        self._lock = threading.Lock()
        self._in_flight = threading.Condition()
        self._streams = 0
        super().__init__()
        # Shutdown waits for serve_forever's poll: a short one keeps the many tests that
        # start an endpoint each from idling half a second apiece.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://{self.host}"

    def count_sent(self, route: str, n: int) -> None:
        with self._lock:
            self.sent[route] = self.sent.get(route, 0) + n

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # let stalled replies go, so that shutdown can finish
        super().__exit__(*exc)

    # ---- behaviour -------------------------------------------------------------------

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        prompt = _prompt(body, self.fault == "drop_system", self.fault == "billing_in_prompt")
        with self._lock:
            hit = max((_common_prefix(prompt, p) for p in self._prompts), default=0)
            self._prompts.append(prompt)
        cached = 0 if self.fault == "no_cache" else min(hit, len(prompt) - 1)
        return {"input_tokens": len(prompt) - cached, "cache_read_input_tokens": cached}

    def count(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.fault == "count_zero":
            return {"input_tokens": 0}
        if self.fault == "count_constant":
            return {"input_tokens": 7}
        return {"input_tokens": len(_prompt(body, False))}

    def refusal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        roles = [m.get("role") for m in body.get("messages") or []]
        if self.fault == "reject_system" and "system" in roles:
            error = {"type": "invalid_request_error", "message": "role: Input should be 'user'"}
            return 400, {"type": "error", "error": error}
        return None

    def content(self, body: dict[str, Any]) -> tuple[Events, str]:
        """The blocks of the answer (as events) and its stop reason."""
        offered = {t.get("name") for t in body.get("tools") or []}
        disabled = (body.get("thinking") or {}).get("type") == "disabled"
        if offered & SUITE_TOOLS:
            events = [*_text_block(0, "Checking."), *_tool_block(1, "get_weather")]
            if self.fault != "one_tool_call":
                events += [*_text_block(2, "\n"), *_tool_block(3, "get_time")]
            reason = "end_turn" if self.fault == "tool_calls_end_turn" else "tool_use"
            return events, reason
        events = []
        if not disabled or self.fault == "thinking_block_when_disabled":
            events = _thinking_block(0)
        text = "OK"
        if disabled and self.fault == "think_tags_when_disabled":
            text = "<think>\nHidden.\n</think>\n\nOK"
        return [*events, *_text_block(len(events) // 4, text)], "end_turn"

    def stream_events(self, body: dict[str, Any]) -> Events:
        blocks, reason = self.content(body)
        usage = self.usage(body)
        message: dict[str, Any] = {
            "id": "msg_scripted",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 0},
        }
        events: Events = [
            ("message_start", {"message": message}),
            ("ping", {}),
            *blocks,
            ("message_delta", {"delta": {"stop_reason": reason}, "usage": {"output_tokens": 3}}),
            ("message_stop", {}),
        ]
        if self.fault in GRAMMAR:
            events = GRAMMAR[self.fault][0](events)
        if self.fault == "concurrent_break" and _counting(body) and self._overlapped():
            events = events[:-1]
        return events

    def _overlapped(self) -> bool:
        """Whether another stream is in flight alongside this one (waiting a little for
        one to arrive, so that parallel requests do meet)."""
        with self._in_flight:
            self._streams += 1
            self._in_flight.notify_all()
            met = self._in_flight.wait_for(lambda: self._streams > 1, timeout=2.0)
        return met

    def stream_done(self, body: dict[str, Any]) -> None:
        if self.fault == "concurrent_break" and _counting(body):
            with self._in_flight:
                self._streams -= 1

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        events, reason = self.content(body)
        blocks = [dict(d["content_block"]) for k, d in events if k == "content_block_start"]
        for block in blocks:
            if block["type"] == "text":
                block["text"] = "OK"
            elif block["type"] == "tool_use":
                block["input"] = {"city": "Paris"}
            else:
                block.update(thinking="Short.", signature="c2ln")
        if self.fault == "bad_nonstream_stop_reason":
            reason = "stop"
        return {
            "id": "msg_scripted",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": blocks,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": {**self.usage(body), "output_tokens": 3},
        }

    def server_info(self) -> dict[str, Any]:
        algorithm = None if self.fault == "no_speculative" else "EAGLE"
        return {
            "speculative_algorithm": algorithm,
            "internal_states": [{"avg_spec_accept_length": 1.5}],
        }

    def models(self) -> dict[str, Any]:
        data = [] if self.fault == "no_models" else [{"id": MODEL, "type": "model"}]
        return {"data": data, "has_more": False}

    # ---- HTTP ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _scripted(self, route: str) -> bool:
                """Serve a canned or stalled reply, or refuse a request as the real API
                does without its headers; False when the route is to be served."""
                with server._lock:
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.routes.append(route)
                if route in server.stall:
                    server._closing.wait(timeout=30)
                    return True
                if route in server.hostile:
                    with contextlib.suppress(OSError):  # the client left, as it should
                        server.hostile[route](self, server, route)
                    self.close_connection = True
                    return True
                if route in server.replies:
                    status, content_type, text = server.replies[route]
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                if not route.split()[1].startswith("/v1/"):
                    return False
                if not self.headers.get("x-api-key"):
                    error = {"type": "authentication_error", "message": "x-api-key required"}
                    self._json(401, {"type": "error", "error": error})
                    return True
                if not self.headers.get("anthropic-version"):
                    error = {"type": "invalid_request_error", "message": "anthropic-version"}
                    self._json(400, {"type": "error", "error": error})
                    return True
                return False

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if self._scripted(f"GET {path}"):
                    return
                if path == "/v1/models":
                    self._json(200, server.models())
                elif path == "/get_server_info":
                    self._json(200, server.server_info())
                elif path == "/health":
                    self._json(200, {})
                else:
                    self._json(404, {"type": "error", "error": {"type": "not_found_error"}})

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with server._lock:
                    server.requests.append(body)
                if self._scripted(f"POST {path}" + (" stream" if body.get("stream") else "")):
                    return
                content_type = self.headers.get("content-type", "").lower()
                problem = (
                    "content-type: expected application/json"
                    if not content_type.startswith("application/json")
                    else malformed(body, path)
                )
                if problem:
                    error = {"type": "invalid_request_error", "message": problem}
                    self._json(400, {"type": "error", "error": error})
                    return
                if path == "/v1/messages/count_tokens":
                    self._json(200, server.count(body))
                    return
                if path != "/v1/messages":
                    self._json(404, {"type": "error", "error": {"type": "not_found_error"}})
                    return
                refused = server.refusal(body)
                if refused:
                    self._json(*refused)
                elif body.get("stream"):
                    self._stream(body)
                else:
                    self._json(200, server.message(body))

            def _stream(self, body: dict[str, Any]) -> None:
                try:
                    events = server.stream_events(body)
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for kind, data in events:
                        payload = json.dumps({"type": kind, **data})
                        self.wfile.write(f"event: {kind}\ndata: {payload}\n\n".encode())
                        self.wfile.flush()
                finally:
                    server.stream_done(body)

        return Handler
