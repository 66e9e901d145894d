"""Protocol smoke checks against any Anthropic-compatible endpoint.

Each check is one small, named request with a precise reason when it fails.
Every streamed response any check receives is also held to the strict stream
grammar (`sse_grammar`), because that is where clients disagree.

The server under test is untrusted: every reply is read with a cap on its size and
a total deadline (per check, and per stream or body within it), and parsed into its
typed shape (`replies`) before a check reads it. A reply that is too big, too slow
or of the wrong shape fails the check that asked for it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from patchkeeper.errors import UnreachableError
from patchkeeper.verify.catalog import CHECK_DEADLINE_S, MAX_REPLY_BYTES, STREAM_DEADLINE_S
from patchkeeper.verify.replies import (
    BadReply,
    Message,
    Models,
    Reply,
    ServerInfo,
    TokenCount,
    Usage,
    parse,
)
from patchkeeper.verify.sse import STOP_REASONS, StreamReport, parse_events, validate


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"  # not asked for, or the model did not exercise it


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class SmokeOptions:
    base_url: str
    model: str | None = None
    api_key: str = "dummy"
    timeout: float = 300.0  # the longest wait for any one read
    check_deadline: float = CHECK_DEADLINE_S
    stream_deadline: float = STREAM_DEADLINE_S
    max_body: int = MAX_REPLY_BYTES
    max_tokens: int = 48
    concurrency: int = 4
    speculative_algorithm: str | None = None
    prefix_rules: int = 300  # size of prefix_cache's shared prefix (~12 tokens each)
    min_accept_length: float = 1.0
    claude_cli: str | None = None


class Failed(Exception):
    """A check's verdict: it failed, for this reason."""


class NotExercised(Exception):
    """The endpoint answered correctly but never did what the check looks at."""


ERROR_BYTES = 4096  # what is read of a reply that is not 200: its head is the reason


class _Watchdog:
    """Shuts a request's connection down at its deadline. Each read has its own timeout,
    so a server that drips even its status line and headers would hold the request for
    as long as it likes; this bounds it whole. (Every request connects anew: see the
    client's limits.)"""

    def __init__(self, ends: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, ends - time.monotonic()), self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace hook: remember each connection the request opens."""
        if event == "connection.connect_tcp.complete":
            with self._lock:
                self._sockets.append(info["return_value"].get_extra_info("socket"))
                if self.fired:
                    self._fire_locked()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._fire_locked()

    def _fire_locked(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass
class Client:
    """HTTP to the endpoint, remembering every stream for the grammar check. `deadline`
    (a `time.monotonic()` instant) is the end of the check under way."""

    options: SmokeOptions
    http: httpx.Client = field(init=False)
    streams: list[tuple[str, StreamReport]] = field(default_factory=list)
    model: str = "default"
    deadline: float = float("inf")

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.options.base_url.rstrip("/"),
            timeout=self.options.timeout,
            limits=httpx.Limits(max_keepalive_connections=0),  # each request watched
            headers={
                "x-api-key": self.options.api_key,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )

    def body(self, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.options.max_tokens,
            "messages": messages,
            **extra,
        }

    def remaining(self) -> float:
        """Seconds left to the check under way."""
        return self.deadline - time.monotonic()

    def fetch(
        self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
    ) -> tuple[httpx.Response, bytes]:
        """One request and its reply, read whole within the caps: at most `max_body`
        bytes (`ERROR_BYTES` of a reply that is not 200: the rest is not read), by the
        stream deadline and the check's. Any wait for one read ends by then too."""
        what = f"{method} {path}"
        if self.remaining() <= 0:
            raise Failed(f"{what}: not sent: the check's deadline has passed")
        limit = min(self.options.stream_deadline, self.remaining())
        ends = time.monotonic() + limit
        whose = "the check's" if limit < self.options.stream_deadline else "a reply's"
        late = f"{what}: still sending after {limit:.1f} s, {whose} deadline"
        wait = max(0.01, min(self.options.timeout, limit))
        data = bytearray()
        watchdog = _Watchdog(ends)
        try:
            with (
                watchdog,
                self.http.stream(
                    method,
                    path,
                    json=body,
                    headers=headers,
                    timeout=wait,
                    extensions={"trace": watchdog.trace},
                ) as reply,
            ):
                cap = self.options.max_body if reply.status_code == 200 else ERROR_BYTES
                for chunk in reply.iter_bytes():
                    data += chunk
                    if len(data) > cap and reply.status_code != 200:
                        break
                    if len(data) > cap:
                        raise Failed(f"{what}: the reply is larger than {cap} bytes")
                    if time.monotonic() > ends:
                        raise Failed(f"{late} ({len(data)} bytes so far)")
            if watchdog.fired:  # the connection it shut down may read as the reply's end
                raise Failed(f"{late} ({len(data)} bytes so far)")
        except httpx.HTTPError:
            if watchdog.fired:
                raise Failed(f"{late} ({len(data)} bytes so far)") from None
            raise
        return reply, bytes(data[:cap])

    def get(self, path: str, shape: type[Reply]) -> Reply:
        return self._parsed("GET", path, None, shape)

    def post(self, path: str, body: dict[str, Any], shape: type[Reply]) -> Reply:
        return self._parsed("POST", path, body, shape)

    def _parsed(
        self, method: str, path: str, body: dict[str, Any] | None, shape: type[Reply]
    ) -> Reply:
        reply, data = self.fetch(method, path, body)
        if reply.status_code != 200:
            raise Failed(f"{method} {path}: HTTP {reply.status_code}: {_head(data)}")
        try:
            return parse(shape, data, f"{method} {path}")
        except BadReply as err:
            raise Failed(str(err)) from None

    def stream(self, check: str, body: dict[str, Any]) -> StreamReport:
        reply, data = self.fetch(
            "POST",
            "/v1/messages",
            {**body, "stream": True},
            accept="text/event-stream",
        )
        if reply.status_code != 200:
            raise Failed(f"stream: HTTP {reply.status_code}: {_head(data)}")
        # The body, read within the caps, parsed as the event stream it claims to be.
        read = httpx.Response(
            200, headers={"content-type": reply.headers.get("content-type", "")}, content=data
        )
        try:
            raw = [(sse.event, sse.data) for sse in EventSource(read).iter_sse()]
        except SSEError as err:
            raise Failed(f"stream: not an event stream: {err}") from None
        events, problems = parse_events(raw)
        report = validate(events)
        report.violations[:0] = problems
        self.streams.append((check, report))
        return report


def _head(data: bytes) -> str:
    """The start of an error reply, as text."""
    return data[:300].decode("utf-8", "replace")


def _grammar(report: StreamReport) -> None:
    if not report.ok:
        raise Failed("stream breaks the grammar: " + "; ".join(report.violations[:3]))


HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def check_messages_basic(client: Client) -> str:
    reply = client.post("/v1/messages", client.body(HELLO), Message)
    problems = []
    if reply.type != "message" or reply.role != "assistant":
        problems.append(f"type/role are {reply.type!r}/{reply.role!r}")
    if reply.stop_reason not in STOP_REASONS:
        problems.append(f"stop_reason {reply.stop_reason!r}")
    if reply.usage.input_tokens is None or reply.usage.output_tokens is None:
        problems.append(f"usage lacks integer input/output tokens: {_usage(reply.usage)}")
    if problems:
        raise Failed("non-streaming response: " + "; ".join(problems))
    report = client.stream("messages_basic", client.body(HELLO))
    _grammar(report)
    if not report.blocks:
        raise Failed("streaming response has no content block")
    return f"non-streaming and streaming answers well formed ({len(report.text())} chars streamed)"


def check_models_list(client: Client) -> str:
    ids = [m.id for m in client.get("/v1/models", Models).data]
    if not ids:
        raise Failed("GET /v1/models lists no model ids")
    return f"models: {', '.join(ids[:3])}"


def _count(client: Client, messages: list[dict[str, Any]]) -> int:
    body = {"model": client.model, "messages": messages}
    count = client.post("/v1/messages/count_tokens", body, TokenCount).input_tokens
    if count <= 0:  # 0 is no count of a non-empty prompt
        raise Failed(f"input_tokens is {count!r}")
    return count


def check_count_tokens(client: Client) -> str:
    """A positive count that grows with the prompt (a constant is no count)."""
    short = _count(client, HELLO)
    longer = [{"role": "user", "content": HELLO[0]["content"] + " Then say goodbye, twice."}]
    grown = _count(client, longer)
    if grown <= short:
        raise Failed(f"a longer prompt did not count more input_tokens ({short} -> {grown})")
    return f"input_tokens={short}, {grown} for a longer prompt"


def check_mid_conversation_system(client: Client) -> str:
    """Claude Code follows the user turn with a role "system" entry inside `messages`."""
    user = {"role": "user", "content": "What is two plus two?"}
    system = {"role": "system", "content": "Reminder MARKER-7f3: answer with a single digit."}
    baseline = client.stream("mid_conversation_system", client.body([user]))
    _grammar(baseline)
    with_system = client.stream("mid_conversation_system", client.body([user, system]))
    _grammar(with_system)
    before, after = baseline.usage.prompt_tokens(), with_system.usage.prompt_tokens()
    if after <= before:
        raise Failed(f"accepted, but input_tokens did not grow ({before} -> {after}): dropped?")
    return f"accepted and counted ({before} -> {after} input tokens)"


def _usage(usage: Usage) -> str:
    return str(usage.model_dump(exclude_unset=True))[:300]


TOOLS = [
    {
        "name": name,
        "description": f"Get the current {what} for a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    for name, what in (("get_weather", "weather"), ("get_time", "local time"))
]


def check_tool_stream_blocks(client: Client) -> str:
    """Two tool calls in one stream: where a text chunk between them lands is the bug."""
    prompt = "Call get_weather for Paris, then get_time for Paris. Use both tools now."
    report = client.stream(
        "tool_stream_blocks",
        client.body(
            [{"role": "user", "content": prompt}], tools=TOOLS, tool_choice={"type": "any"}
        ),
    )
    _grammar(report)
    calls = report.of_type("tool_use")
    if len(calls) < 2:
        raise NotExercised(f"the model made {len(calls)} tool call(s); the check needs two")
    names = {str(tool["name"]) for tool in TOOLS}
    for call in calls:
        if call.get("name") not in names or not isinstance(call.get("input"), dict):
            raise Failed(f"tool_use block is not a call of an offered tool: {call}")
    if report.stop_reason != "tool_use":
        raise Failed(f"{len(calls)} tool calls, but stop_reason is {report.stop_reason!r}")
    return f"{len(calls)} tool_use blocks, {len(report.blocks)} blocks in all, grammar holds"


THINK_TAG = re.compile(r"</?think\b", re.IGNORECASE)


def check_thinking_disabled(client: Client) -> str:
    report = client.stream("thinking_disabled", client.body(HELLO, thinking={"type": "disabled"}))
    _grammar(report)
    if report.of_type("thinking"):
        raise Failed("thinking is disabled, yet the stream has a thinking block")
    if THINK_TAG.search(report.text()):
        raise Failed(f"thinking is disabled, yet the text has think tags: {report.text()[:80]!r}")
    return "no thinking blocks, no think tags"


def check_prefix_cache(client: Client) -> str:
    rules = range(client.options.prefix_rules)
    prefix = " ".join(f"Rule {i}: keep answers short and precise." for i in rules)
    usages = []
    for question in ("Name a colour.", "Name a fruit."):
        body = client.body([{"role": "user", "content": question}], system=prefix)
        usages.append(client.post("/v1/messages", body, Message).usage)
    cached = usages[1].cache_read_input_tokens or 0
    if cached <= 0:
        raise Failed(
            f"second request reports cache_read_input_tokens={cached!r}: {_usage(usages[1])}"
        )
    return f"cache_read_input_tokens={cached} on the repeat"


BILLING_LINE = "x-anthropic-billing-header: cc_version=2.1.197.{0}; cc_entrypoint=cli; cch={0};"
CLAUDE_CODE_TURN = "data/claude_code_turn.json"
FOLLOW_UPS = ("And which one is largest?", "Summarise it in one line.", "Thanks.")
CACHED_SHARE = 0.95  # of turn 1's prompt that turn 2 must read from the cache


def claude_code_turn(turn: int, model: str, max_tokens: int) -> dict[str, Any]:
    """Claude Code 2.1.197's request for `turn` (0: the first; at most `len(FOLLOW_UPS)`).

    Captured from the real CLI (`claude -p`, then `--continue`) and trimmed to what a
    tiny CPU model serves: the system prompt cut after its first sections, two of the
    24 tools, the mid-conversation `role: "system"` entry cut to its first line; its
    structure is Claude Code's (three system blocks, the billing line first, tools,
    that entry after the user turn, metadata, adaptive thinking). Each turn carries a
    fresh billing line, as the CLI sends one per turn, and appends an assistant reply
    and the next user turn, moving the cache breakpoint to it as the CLI does.
    """
    data = resources.files("patchkeeper.verify").joinpath(CLAUDE_CODE_TURN).read_text("utf-8")
    body: dict[str, Any] = json.loads(data)
    body["system"][0]["text"] = BILLING_LINE.format(secrets.token_hex(3))
    messages = body["messages"]
    for question in FOLLOW_UPS[:turn]:
        for message in messages:
            if isinstance(message["content"], list):
                for block in message["content"]:
                    block.pop("cache_control", None)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Done."}]})
        text = {"type": "text", "text": question, "cache_control": {"type": "ephemeral"}}
        messages.append({"role": "user", "content": [text]})
    return {"model": model, "max_tokens": max_tokens, **body}


def check_billing_header_prefix(client: Client) -> str:
    """Claude Code's first system block is a billing line whose suffix changes every
    turn. A server that renders it into the head of the prompt shares no prefix between
    turns, so turn 2 re-reads the whole prompt (13-15x the cost): turn 2, Claude Code's
    own request shape, must read nearly all of turn 1's prompt from the cache, as a
    radix cache does (all of it but the generation prompt's tail, at most). Not
    exercised where the endpoint reports no cached tokens."""
    # Only the usage counts: one output token each keeps a slow server's turns short.
    usages = [
        client.post("/v1/messages", claude_code_turn(turn, client.model, 1), Message).usage
        for turn in (0, 1)
    ]
    cached = usages[1].cache_read_input_tokens
    if cached is None:
        raise NotExercised(f"the endpoint reports no cached input tokens: {_usage(usages[1])}")
    first = usages[0].prompt_tokens()
    if cached < CACHED_SHARE * first:
        raise Failed(
            f"turn 2 read {cached} of turn 1's {first} prompt tokens from the cache "
            f"(under {CACHED_SHARE:.0%}): the per-turn billing line busts the prefix"
        )
    return f"turn 2 read {cached} of turn 1's {first} prompt tokens from the cache"


def check_concurrency(client: Client) -> str:
    n = client.options.concurrency

    def one(i: int) -> StreamReport:
        return client.stream(
            "concurrency", client.body([{"role": "user", "content": f"Count to {i + 2}."}])
        )

    with ThreadPoolExecutor(n) as pool:
        reports = list(pool.map(one, range(n)))
    broken = [i for i, r in enumerate(reports) if not r.ok]
    if broken:
        raise Failed(
            f"{len(broken)} of {n} parallel streams broke the grammar: "
            + "; ".join(reports[broken[0]].violations[:2])
        )
    return f"{n} parallel streams, all valid"


def _algorithm(name: object) -> str:
    """SGLang runs (and reports) NEXTN, the MTP draft, as EAGLE."""
    upper = str(name).upper()
    return "EAGLE" if upper == "NEXTN" else upper


def check_speculative(client: Client) -> str:
    wanted = client.options.speculative_algorithm
    if not wanted:
        raise NotExercised("no speculative algorithm expected")
    info = client.get("/get_server_info", ServerInfo)
    algorithm = info.speculative_algorithm or (
        info.server_args.speculative_algorithm if info.server_args else None
    )
    if _algorithm(algorithm) != _algorithm(wanted):
        raise Failed(f"server runs speculative algorithm {algorithm!r}, expected {wanted!r}")
    accept = info.internal_states[0].avg_spec_accept_length if info.internal_states else None
    if accept is None:
        raise Failed("server reports no avg_spec_accept_length in internal_states[0]")
    if accept < client.options.min_accept_length:
        raise Failed(f"average accept length {accept:.2f} < {client.options.min_accept_length}")
    return f"{algorithm}, average accept length {accept:.2f}"


def check_claude_code(client: Client) -> str:
    cli = client.options.claude_cli
    if not cli:
        raise NotExercised("no Claude Code CLI given (--claude-cli)")
    with tempfile.TemporaryDirectory(prefix="patchkeeper-claude-") as home:
        env = {
            "HOME": home,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ANTHROPIC_BASE_URL": client.options.base_url,
            "ANTHROPIC_API_KEY": "dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        try:
            done = subprocess.run(
                [
                    cli,
                    "-p",
                    "Reply with the single word OK.",
                    "--output-format",
                    "json",
                    "--model",
                    client.model,
                ],
                env=env,
                capture_output=True,
                text=True,
                errors="replace",  # its output quotes the server
                timeout=max(0.01, min(client.options.timeout, client.remaining())),
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Failed(f"claude CLI did not run: {err}") from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except ValueError:
        result = {}
    if not isinstance(result, dict):
        result = {}
    if done.returncode != 0 or result.get("is_error") is not False:
        detail = result.get("result") or done.stderr.strip()[-200:] or done.stdout[-200:]
        raise Failed(
            f"claude exited {done.returncode}, is_error={result.get('is_error')}: {detail}"
        )
    return f"claude -p answered: {str(result.get('result', ''))[:60]!r}"


CHECKS: dict[str, Callable[[Client], str]] = {
    "messages_basic": check_messages_basic,
    "models_list": check_models_list,
    "count_tokens": check_count_tokens,
    "mid_conversation_system": check_mid_conversation_system,
    "tool_stream_blocks": check_tool_stream_blocks,
    "thinking_disabled": check_thinking_disabled,
    "prefix_cache": check_prefix_cache,
    "billing_header_prefix": check_billing_header_prefix,
    "concurrency": check_concurrency,
    "speculative": check_speculative,
    "claude_code": check_claude_code,
}
ALL = [*CHECKS, "sse_grammar"]


def _first_model(client: Client) -> str:
    """The first model the endpoint lists ("default" if it lists none, or garbage: that
    is `models_list`'s to report); UnreachableError if it does not answer at all."""
    client.deadline = time.monotonic() + client.options.check_deadline
    try:
        listed = client.get("/v1/models", Models).data
    except httpx.HTTPError as err:
        raise UnreachableError(f"endpoint {client.options.base_url} unreachable: {err}") from None
    except Failed:
        return "default"
    return listed[0].id if listed else "default"


def run_suite(options: SmokeOptions, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: all) and the grammar check over their streams."""
    client = Client(options)
    model = _first_model(client)
    client.model = options.model or model
    results = []
    for name, check in CHECKS.items():
        if names and name not in names:
            continue
        started = time.monotonic()
        client.deadline = started + options.check_deadline
        try:
            status, reason = Status.PASSED, check(client)
        except Failed as err:
            status, reason = Status.FAILED, str(err)
        except NotExercised as err:
            status, reason = Status.NOT_RUN, str(err)
        except httpx.HTTPError as err:
            status, reason = Status.FAILED, f"transport error: {err}"
        results.append(CheckResult(name, status, reason, time.monotonic() - started))
    broken = [(name, r) for name, r in client.streams if not r.ok]
    if broken:
        first, report = broken[0]
        grammar = CheckResult(
            "sse_grammar",
            Status.FAILED,
            f"{len(broken)} of {len(client.streams)} streams broke it; first ({first}): "
            + "; ".join(report.violations[:3]),
        )
    else:
        grammar = CheckResult(
            "sse_grammar",
            Status.PASSED if client.streams else Status.NOT_RUN,
            f"{len(client.streams)} streams, all valid",
        )
    if not names or "sse_grammar" in names:
        results.append(grammar)
    return results
