"""Each smoke check on its own, against the scripted endpoint over real HTTP and SSE: the
reason it passes with, and every reason it fails with, word for word (those reasons are
what the report and the JUnit file show). Broken servers are the double's `replies`
(canned bytes), `stall` or a subclass that sends what the broken server sends."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from patchkeeper.errors import UnreachableError
from patchkeeper.verify.smoke import (
    BILLING_LINE,
    CHECKS,
    Client,
    Failed,
    NotExercised,
    SmokeOptions,
    Status,
    check_billing_header_prefix,
    check_claude_code,
    check_concurrency,
    check_count_tokens,
    check_messages_basic,
    check_mid_conversation_system,
    check_models_list,
    check_prefix_cache,
    check_speculative,
    check_thinking_disabled,
    check_tool_stream_blocks,
    claude_code_turn,
    run_suite,
)
from tests.verify.anthropic_double import MODEL, Events, Reply, ScriptedAnthropic

JSON = "application/json"
CheckFn = Callable[[Client], str]


@pytest.fixture
def endpoint() -> Iterator[ScriptedAnthropic]:
    with ScriptedAnthropic() as server:
        yield server


def client_of(server: ScriptedAnthropic, **options: Any) -> Client:
    client = Client(SmokeOptions(server.url, **options))
    client.model = MODEL
    return client


def failure(check: CheckFn, server: ScriptedAnthropic, **options: Any) -> str:
    with pytest.raises(Failed) as caught:
        check(client_of(server, **options))
    return str(caught.value)


def not_exercised(check: CheckFn, server: ScriptedAnthropic, **options: Any) -> str:
    with pytest.raises(NotExercised) as caught:
        check(client_of(server, **options))
    return str(caught.value)


def stream_body(events: Events) -> str:
    return "".join(
        f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n" for kind, data in events
    )


class Replying(ScriptedAnthropic):
    """The scripted endpoint with its messages, models or server info rewritten."""

    def __init__(
        self,
        *,
        message: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
        events: Callable[[dict[str, Any], Events], Events] | None = None,
        models: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        count: Callable[[dict[str, Any]], object] | None = None,
        **kwargs: Any,
    ) -> None:
        self._message, self._events = message, events
        self._models, self._info, self._count = models, info, count
        super().__init__(**kwargs)

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = super().message(body)
        return self._message(body, reply) if self._message else reply

    def stream_events(self, body: dict[str, Any]) -> Events:
        events = super().stream_events(body)
        return self._events(body, events) if self._events else events

    def models(self) -> dict[str, Any]:
        return self._models if self._models is not None else super().models()

    def server_info(self) -> dict[str, Any]:
        return self._info if self._info is not None else super().server_info()

    def count(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"input_tokens": self._count(body)} if self._count else super().count(body)


# ---- the client: headers, bodies, HTTP and stream failures -----------------------------


def test_every_request_carries_the_api_key_version_and_the_options(
    endpoint: ScriptedAnthropic,
) -> None:
    results = run_suite(
        SmokeOptions(endpoint.url + "/", api_key="sk-test-7", max_tokens=17, model="picked"),
        ["messages_basic", "count_tokens"],
    )
    assert [r.status for r in results] == [Status.PASSED, Status.PASSED], results
    assert endpoint.headers and all(
        h["x-api-key"] == "sk-test-7" and h["anthropic-version"] == "2023-06-01"
        for h in endpoint.headers
    )
    messages = [r for r in endpoint.requests if "max_tokens" in r]
    assert [r.get("stream", False) for r in messages] == [False, True]
    assert all(r["max_tokens"] == 17 and r["model"] == "picked" for r in messages)
    counts = [r for r in endpoint.requests if "max_tokens" not in r]
    assert [r["model"] for r in counts] == ["picked", "picked"]


def test_a_non_200_reply_fails_with_its_status_and_the_head_of_its_body() -> None:
    body = "overloaded " + "x" * 400
    with ScriptedAnthropic(replies={"POST /v1/messages": (529, "text/plain", body)}) as server:
        reason = failure(check_messages_basic, server)
    assert reason == f"POST /v1/messages: HTTP 529: {body[:300]}"


def test_a_stream_refused_fails_with_its_status_and_the_head_of_its_body() -> None:
    body = json.dumps({"type": "error", "error": {"message": "y" * 400}})
    with ScriptedAnthropic(replies={"POST /v1/messages stream": (503, JSON, body)}) as server:
        reason = failure(check_thinking_disabled, server)
    assert reason == f"stream: HTTP 503: {body[:300]}"


def test_a_stream_that_is_not_an_event_stream_fails_as_such() -> None:
    with ScriptedAnthropic(replies={"POST /v1/messages stream": (200, JSON, "{}")}) as server:
        client = client_of(server)
        with pytest.raises(Failed) as caught:
            check_thinking_disabled(client)
    assert str(caught.value).startswith("stream: not an event stream: ")
    assert "text/event-stream" in str(caught.value)
    assert client.streams == []  # nothing was streamed, so the grammar has nothing to judge


HTML = "<html>busy</html>" + "z" * 300


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (HTML, f"response is not JSON (expected value at line 1 column 1): {HTML[:200]!r}"),
        ("[1, 2]", "response is not a JSON object"),
    ],
)
def test_a_reply_that_is_no_json_object_fails_naming_what_was_asked(text: str, reason: str) -> None:
    with ScriptedAnthropic(replies={"POST /v1/messages": (200, JSON, text)}) as server:
        assert failure(check_messages_basic, server) == f"POST /v1/messages: {reason}"
    with ScriptedAnthropic(replies={"GET /v1/models": (200, JSON, text)}) as server:
        assert failure(check_models_list, server) == f"GET /v1/models: {reason}"


def test_unparsable_stream_data_comes_first_among_the_grammar_violations() -> None:
    text = stream_body([("message_start", {"message": {"usage": {}}})]) + (
        "event: content_block_delta\ndata: {not json\n\n"
    )
    with ScriptedAnthropic(
        replies={"POST /v1/messages stream": (200, "text/event-stream", text)}
    ) as server:
        client = client_of(server)
        with pytest.raises(Failed) as caught:
            check_thinking_disabled(client)
    assert str(caught.value) == (
        "stream breaks the grammar: event 1 (content_block_delta): data is not JSON: "
        "'{not json'; the stream ended without message_stop"
    )
    assert [(check, r.ok) for check, r in client.streams] == [("thinking_disabled", False)]


def test_the_grammar_reason_names_the_first_three_violations_only() -> None:
    pings = [("ping", {}), ("content_block_flush", {}), ("content_block_wipe", {})]

    def broken(_body: dict[str, Any], events: Events) -> Events:
        return [*pings, *events[:-1]]

    with Replying(events=broken) as server:
        reason = failure(check_thinking_disabled, server)
    assert reason == (
        "stream breaks the grammar: event 0 (ping): the first event must be message_start; "
        "event 1 (content_block_flush): unknown event type 'content_block_flush'; "
        "event 2 (content_block_wipe): unknown event type 'content_block_wipe'"
    )


def test_a_stalled_endpoint_is_a_transport_failure_not_a_hang() -> None:
    with ScriptedAnthropic(stall=frozenset({"POST /v1/messages stream"})) as server:
        results = run_suite(SmokeOptions(server.url, timeout=0.5), ["thinking_disabled"])
    assert [(r.name, r.status) for r in results] == [("thinking_disabled", Status.FAILED)]
    assert results[0].reason == "transport error: timed out"


# ---- run_suite: selection, order, the grammar row, an unreachable endpoint -----------


def test_the_suite_runs_the_named_checks_in_order_and_times_each(
    endpoint: ScriptedAnthropic,
) -> None:
    names = ["sse_grammar", "thinking_disabled", "models_list", "speculative"]
    started = time.monotonic()
    results = run_suite(SmokeOptions(endpoint.url), names)
    elapsed = time.monotonic() - started
    assert [(r.name, r.status, r.reason) for r in results] == [
        ("models_list", Status.PASSED, f"models: {MODEL}"),
        ("thinking_disabled", Status.PASSED, "no thinking blocks, no think tags"),
        ("speculative", Status.NOT_RUN, "no speculative algorithm expected"),
        ("sse_grammar", Status.PASSED, "1 streams, all valid"),
    ]
    assert all(0 <= r.seconds <= elapsed for r in results), results
    assert results[0].seconds > 0 and results[1].seconds > 0  # they went over HTTP: measured
    assert results[-1].seconds == 0.0


def test_without_names_every_check_runs_and_without_sse_grammar_named_it_is_left_out(
    endpoint: ScriptedAnthropic,
) -> None:
    every = run_suite(SmokeOptions(endpoint.url, prefix_rules=2))
    assert [r.name for r in every] == [*CHECKS, "sse_grammar"]
    assert every[-1].reason == "9 streams, all valid"
    only = run_suite(SmokeOptions(endpoint.url), ["thinking_disabled"])
    assert [r.name for r in only] == ["thinking_disabled"]


def test_no_stream_means_the_grammar_was_not_run(endpoint: ScriptedAnthropic) -> None:
    results = run_suite(SmokeOptions(endpoint.url), ["models_list", "sse_grammar"])
    grammar = results[-1]
    assert (grammar.name, grammar.status, grammar.reason) == (
        "sse_grammar",
        Status.NOT_RUN,
        "0 streams, all valid",
    )


def test_the_grammar_row_counts_the_broken_streams_and_names_the_first() -> None:
    def tool_only(body: dict[str, Any], events: Events) -> Events:
        return events[:-1] if body.get("tools") else events

    with Replying(events=tool_only) as server:
        results = {
            r.name: r
            for r in run_suite(
                SmokeOptions(server.url),
                ["messages_basic", "tool_stream_blocks", "thinking_disabled", "sse_grammar"],
            )
        }
    assert results["tool_stream_blocks"].status is Status.FAILED
    assert results["messages_basic"].status is Status.PASSED
    grammar = results["sse_grammar"]
    assert grammar.status is Status.FAILED
    assert grammar.reason == (
        "1 of 3 streams broke it; first (tool_stream_blocks): the stream ended without message_stop"
    )


def test_the_grammar_row_shows_three_violations_of_the_first_broken_stream() -> None:
    def broken(_body: dict[str, Any], events: Events) -> Events:
        extra = [("content_block_flush", {}), ("content_block_wipe", {}), ("x", {}), ("y", {})]
        return [events[0], *extra, *events[1:]]

    with Replying(events=broken) as server:
        results = run_suite(SmokeOptions(server.url), ["thinking_disabled", "sse_grammar"])
    assert results[-1].reason == (
        "1 of 1 streams broke it; first (thinking_disabled): "
        "event 1 (content_block_flush): unknown event type 'content_block_flush'; "
        "event 2 (content_block_wipe): unknown event type 'content_block_wipe'; "
        "event 3 (x): unknown event type 'x'"
    )


def test_an_endpoint_that_does_not_answer_is_unreachable() -> None:
    with ScriptedAnthropic() as server:
        url = server.url
    with pytest.raises(UnreachableError, match=f"^endpoint {re.escape(url)} unreachable: "):
        run_suite(SmokeOptions(url), ["models_list"])


@pytest.mark.parametrize(
    ("reply", "model"),
    [
        ((200, JSON, json.dumps({"data": [{"id": "first"}, {"id": "second"}]})), "first"),
        ((200, JSON, json.dumps({"data": []})), "default"),
        ((500, JSON, json.dumps({"data": [{"id": "first"}]})), "default"),
        ((200, JSON, "not json"), "default"),
        ((200, JSON, json.dumps({"data": [{"name": "no id"}]})), "default"),
        ((200, JSON, json.dumps([{"id": "a list"}])), "default"),
        ((200, JSON, json.dumps({"data": ["a string"]})), "default"),
    ],
)
def test_the_model_is_the_first_listed_else_default(reply: Reply, model: str) -> None:
    with ScriptedAnthropic(replies={"GET /v1/models": reply}) as server:
        results = run_suite(SmokeOptions(server.url), ["count_tokens"])
    assert results[0].status is Status.PASSED, results
    assert [r["model"] for r in server.requests] == [model, model]


# ---- messages_basic -------------------------------------------------------------------


def test_messages_basic_passes_a_well_formed_answer(endpoint: ScriptedAnthropic) -> None:
    client = client_of(endpoint)
    reason = check_messages_basic(client)
    assert reason == "non-streaming and streaming answers well formed (2 chars streamed)"
    assert [check for check, _ in client.streams] == ["messages_basic"]
    hello = [{"role": "user", "content": "Say hello in one short sentence."}]
    assert [(r["messages"], r.get("stream")) for r in endpoint.requests] == [
        (hello, None),
        (hello, True),
    ]


def edit(**fields: Any) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(_body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        out = {**reply, **fields}
        return {k: v for k, v in out.items() if v is not ...}

    return apply


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "completion"}, "type/role are 'completion'/'assistant'"),
        ({"role": "user"}, "type/role are 'message'/'user'"),
        ({"stop_reason": None}, "stop_reason None"),
        ({"usage": ...}, "usage lacks integer input/output tokens: {}"),
        (
            {"usage": {"input_tokens": 5}},
            "usage lacks integer input/output tokens: {'input_tokens': 5}",
        ),
    ],
)
def test_messages_basic_names_what_is_wrong_with_the_reply(
    fields: dict[str, Any], problem: str
) -> None:
    with Replying(message=edit(**fields)) as server:
        assert failure(check_messages_basic, server) == f"non-streaming response: {problem}"


def test_messages_basic_lists_every_problem_at_once() -> None:
    broken = edit(type=..., role=..., stop_reason="stop", usage=...)
    with Replying(message=broken) as server:
        assert failure(check_messages_basic, server) == (
            "non-streaming response: type/role are None/None; stop_reason 'stop'; "
            "usage lacks integer input/output tokens: {}"
        )


WRONG = "POST /v1/messages: response of the wrong shape: "


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"content": "OK"}, "content: Input should be a valid array (got 'OK')"),
        ({"content": [{"text": "OK"}]}, "content.0.type: Field required"),
        ({"content": ["OK"]}, "content.0: Input should be an object (got 'OK')"),
        ({"content": [{"type": 5}]}, "content.0.type: Input should be a valid string (got 5)"),
        (
            {"usage": {"input_tokens": "5", "output_tokens": 3}},
            "usage.input_tokens: Input should be a valid integer (got '5')",
        ),
        ({"usage": [1, 2]}, "usage: Input should be an object"),
        ({"usage": "many"}, "usage: Input should be an object (got 'many')"),
        (
            {"content": {}, "usage": None},
            "content: Input should be a valid array; usage: Input should be an object (got None)",
        ),
    ],
)
def test_messages_basic_names_the_field_of_a_reply_of_the_wrong_shape(
    fields: dict[str, Any], problem: str
) -> None:
    with Replying(message=edit(**fields)) as server:
        assert failure(check_messages_basic, server) == WRONG + problem


def test_messages_basic_needs_a_content_block_in_the_stream() -> None:
    def no_blocks(_body: dict[str, Any], events: Events) -> Events:
        return [e for e in events if not e[0].startswith("content_block")]

    with Replying(events=no_blocks) as server:
        assert failure(check_messages_basic, server) == "streaming response has no content block"


def test_messages_basic_holds_its_stream_to_the_grammar() -> None:
    def unstopped(_body: dict[str, Any], events: Events) -> Events:
        return events[:-1]

    with Replying(events=unstopped) as server:
        assert failure(check_messages_basic, server) == (
            "stream breaks the grammar: the stream ended without message_stop"
        )


# ---- models_list ---------------------------------------------------------------------


def test_models_list_shows_the_first_three_ids() -> None:
    data = [{"id": "a", "type": "model"}, {"id": "c"}, {"id": "d"}, {"id": "e"}]
    with Replying(models={"data": data}) as server:
        assert check_models_list(client_of(server)) == "models: a, c, d"


MODELS_WRONG = "GET /v1/models: response of the wrong shape: "


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((404, JSON, "{}"), "GET /v1/models: HTTP 404: {}"),
        ((200, JSON, json.dumps({"data": []})), "GET /v1/models lists no model ids"),
        (
            (200, JSON, json.dumps({"data": None})),
            MODELS_WRONG + "data: Input should be a valid array (got None)",
        ),
        (
            (200, JSON, json.dumps({"data": 5})),
            MODELS_WRONG + "data: Input should be a valid array (got 5)",
        ),
        (
            (200, JSON, json.dumps({"data": [{"id": 1}]})),
            MODELS_WRONG + "data.0.id: Input should be a valid string (got 1)",
        ),
        (
            (200, JSON, json.dumps({"data": [{"id": 7}, "junk", {"id": "a"}]})),
            MODELS_WRONG + "data.0.id: Input should be a valid string (got 7); "
            "data.1: Input should be an object (got 'junk')",
        ),
    ],
)
def test_models_list_fails_on_an_error_or_no_ids(reply: Reply, reason: str) -> None:
    with ScriptedAnthropic(replies={"GET /v1/models": reply}) as server:
        assert failure(check_models_list, server) == reason


# ---- count_tokens --------------------------------------------------------------------


def test_count_tokens_reports_both_counts(endpoint: ScriptedAnthropic) -> None:
    # The double counts words: <system> <user> and the six of the greeting, then four more.
    assert check_count_tokens(client_of(endpoint)) == "input_tokens=8, 12 for a longer prompt"
    assert [r["model"] for r in endpoint.requests] == [MODEL, MODEL]
    assert endpoint.requests[1]["messages"][0]["content"].startswith(
        endpoint.requests[0]["messages"][0]["content"]
    )


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "input_tokens is 0"), (-3, "input_tokens is -3")]
    + [
        (
            value,
            "POST /v1/messages/count_tokens: response of the wrong shape: input_tokens: "
            f"Input should be a valid integer (got {value!r})",
        )
        for value in (True, "12", None, 2.5)
    ],
)
def test_count_tokens_refuses_what_is_no_count(count: object, shown: str) -> None:
    with Replying(count=lambda _body: count) as server:
        assert failure(check_count_tokens, server) == shown


def test_count_tokens_accepts_a_count_of_one_that_grows() -> None:
    with Replying(count=lambda body: 1 if "goodbye" not in json.dumps(body) else 2) as server:
        assert check_count_tokens(client_of(server)) == "input_tokens=1, 2 for a longer prompt"


def test_count_tokens_fails_when_the_longer_prompt_counts_less() -> None:
    with Replying(count=lambda body: 9 if "goodbye" not in json.dumps(body) else 4) as server:
        assert failure(check_count_tokens, server) == (
            "a longer prompt did not count more input_tokens (9 -> 4)"
        )


# ---- mid_conversation_system ---------------------------------------------------------


def test_mid_conversation_system_sends_the_system_turn_after_the_user_turn(
    endpoint: ScriptedAnthropic,
) -> None:
    client = client_of(endpoint)
    # 7 words for the question alone; 16 with the reminder, 1 of them read from the cache.
    assert check_mid_conversation_system(client) == "accepted and counted (7 -> 15 input tokens)"
    assert [m["role"] for m in endpoint.requests[1]["messages"]] == ["user", "system"]
    assert endpoint.requests[0]["messages"] == endpoint.requests[1]["messages"][:1]
    assert [check for check, _ in client.streams] == ["mid_conversation_system"] * 2


def usage_of(stream: dict[str, dict[str, int]]) -> Callable[[dict[str, Any], Events], Events]:
    """Streams whose message_start usage depends on whether a system turn is in them."""

    def apply(body: dict[str, Any], events: Events) -> Events:
        key = "system" if any(m["role"] == "system" for m in body["messages"]) else "user"
        start = {"message": {**events[0][1]["message"], "usage": stream[key]}}
        return [("message_start", start), *events[1:]]

    return apply


def test_mid_conversation_system_counts_cached_and_created_prompt_tokens() -> None:
    usage = {
        "user": {"input_tokens": 9},
        "system": {
            "input_tokens": 1,
            "cache_read_input_tokens": 6,
            "cache_creation_input_tokens": 3,
        },
    }
    with Replying(events=usage_of(usage)) as server:
        reason = check_mid_conversation_system(client_of(server))
    assert reason == "accepted and counted (9 -> 10 input tokens)"


def test_mid_conversation_system_fails_when_nothing_was_added() -> None:
    usage = {
        "user": {"input_tokens": 4, "cache_read_input_tokens": None},
        "system": {"cache_creation_input_tokens": 4},
    }
    with Replying(events=usage_of(usage)) as server:
        reason = failure(check_mid_conversation_system, server)
    assert reason == "accepted, but input_tokens did not grow (4 -> 4): dropped?"


@pytest.mark.parametrize("broken", ["user", "system"])
def test_mid_conversation_system_holds_both_streams_to_the_grammar(broken: str) -> None:
    def unstopped(body: dict[str, Any], events: Events) -> Events:
        has_system = any(m["role"] == "system" for m in body["messages"])
        return events[:-1] if has_system == (broken == "system") else events

    with Replying(events=unstopped) as server:
        reason = failure(check_mid_conversation_system, server)
    assert reason == "stream breaks the grammar: the stream ended without message_stop"


# ---- tool_stream_blocks --------------------------------------------------------------


def test_tool_stream_blocks_offers_both_tools_and_demands_a_call(
    endpoint: ScriptedAnthropic,
) -> None:
    client = client_of(endpoint)
    reason = check_tool_stream_blocks(client)
    assert reason == "2 tool_use blocks, 4 blocks in all, grammar holds"
    (request,) = endpoint.requests
    assert request["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in request["tools"]] == ["get_weather", "get_time"]
    assert request["messages"][0]["content"].startswith("Call get_weather for Paris")
    assert [check for check, _ in client.streams] == ["tool_stream_blocks"]


def rename_tool(name: str, drop_input: bool = False) -> Callable[[dict[str, Any], Events], Events]:
    """The second tool call named `name` (and with no input at all, if asked)."""

    def apply(_body: dict[str, Any], events: Events) -> Events:
        out: Events = []
        for kind, data in events:
            block = data.get("content_block") or {}
            if kind == "content_block_start" and block.get("id") == "toolu_03":
                block = {**block, "name": name}
                if drop_input:
                    del block["input"]
                data = {**data, "content_block": block}
            delta = data.get("delta") or {}
            if drop_input and data.get("index") == 3 and delta.get("type") == "input_json_delta":
                continue
            out.append((kind, data))
        return out

    return apply


def test_tool_stream_blocks_fails_on_a_call_of_a_tool_not_offered() -> None:
    with Replying(events=rename_tool("rm_rf")) as server:
        reason = failure(check_tool_stream_blocks, server)
    call = {"type": "tool_use", "id": "toolu_03", "name": "rm_rf", "input": {"city": "Paris"}}
    assert reason == f"tool_use block is not a call of an offered tool: {call}"


def test_tool_stream_blocks_fails_on_a_call_without_input() -> None:
    with Replying(events=rename_tool("get_time", drop_input=True)) as server:
        reason = failure(check_tool_stream_blocks, server)
    call = {"type": "tool_use", "id": "toolu_03", "name": "get_time"}
    assert reason == f"tool_use block is not a call of an offered tool: {call}"


def test_tool_stream_blocks_counts_three_calls_and_needs_the_tool_use_stop() -> None:
    def three(_body: dict[str, Any], events: Events) -> Events:
        tools = [e for e in events if e[1].get("index") == 3]
        again = [(k, {**d, "index": 4}) for k, d in tools]
        last = max(i for i, (k, _) in enumerate(events) if k == "content_block_stop")
        return [*events[: last + 1], *again, *events[last + 1 :]]

    with Replying(events=three) as server:
        assert check_tool_stream_blocks(client_of(server)) == (
            "3 tool_use blocks, 5 blocks in all, grammar holds"
        )
    with ScriptedAnthropic("tool_calls_end_turn") as server:
        assert failure(check_tool_stream_blocks, server) == (
            "2 tool calls, but stop_reason is 'end_turn'"
        )


def test_tool_stream_blocks_is_not_exercised_without_two_calls() -> None:
    with ScriptedAnthropic("one_tool_call") as server:
        reason = not_exercised(check_tool_stream_blocks, server)
    assert reason == "the model made 1 tool call(s); the check needs two"


def test_tool_stream_blocks_holds_its_stream_to_the_grammar() -> None:
    with ScriptedAnthropic("grammar_text_on_tool") as server:
        reason = failure(check_tool_stream_blocks, server)
    assert reason.startswith("stream breaks the grammar: event ")
    assert "text_delta on a tool_use block (index 1)" in reason


# ---- thinking_disabled ---------------------------------------------------------------


def test_thinking_disabled_asks_for_no_thinking(endpoint: ScriptedAnthropic) -> None:
    client = client_of(endpoint)
    assert check_thinking_disabled(client) == "no thinking blocks, no think tags"
    assert endpoint.requests[0]["thinking"] == {"type": "disabled"}
    assert [check for check, _ in client.streams] == ["thinking_disabled"]


def test_thinking_disabled_fails_on_a_thinking_block() -> None:
    with ScriptedAnthropic("thinking_block_when_disabled") as server:
        reason = failure(check_thinking_disabled, server)
    assert reason == "thinking is disabled, yet the stream has a thinking block"


@pytest.mark.parametrize("tag", ["<think>", "</THINK>", "<think reason='x'>"])
def test_thinking_disabled_fails_on_think_tags_quoting_the_text(tag: str) -> None:
    text = f"Answer first. {tag} " + "w" * 100

    def tagged(_body: dict[str, Any], events: Events) -> Events:
        out: Events = []
        for kind, data in events:
            if (data.get("delta") or {}).get("type") == "text_delta":
                data = {**data, "delta": {"type": "text_delta", "text": text}}
            out.append((kind, data))
        return out

    with Replying(events=tagged) as server:
        reason = failure(check_thinking_disabled, server)
    assert reason == f"thinking is disabled, yet the text has think tags: {text[:80]!r}"


def test_thinking_disabled_lets_a_word_that_starts_like_the_tag_pass() -> None:
    def thinker(_body: dict[str, Any], events: Events) -> Events:
        return [
            (k, {**d, "delta": {"type": "text_delta", "text": "<thinker> said OK"}})
            if (d.get("delta") or {}).get("type") == "text_delta"
            else (k, d)
            for k, d in events
        ]

    with Replying(events=thinker) as server:
        assert check_thinking_disabled(client_of(server)) == "no thinking blocks, no think tags"


# ---- prefix_cache --------------------------------------------------------------------


def test_prefix_cache_repeats_a_long_system_prefix(endpoint: ScriptedAnthropic) -> None:
    # 20 rules of 7 words, <system>, <user>, then "Name a" are shared: 144 words.
    assert check_prefix_cache(client_of(endpoint, prefix_rules=20)) == (
        "cache_read_input_tokens=144 on the repeat"
    )
    first, second = endpoint.requests
    assert first["system"] == second["system"]
    assert first["system"].startswith("Rule 0: keep answers short and precise. Rule 1: ")
    assert first["system"].endswith("Rule 19: keep answers short and precise.")
    assert [r["messages"][0]["content"] for r in endpoint.requests] == [
        "Name a colour.",
        "Name a fruit.",
    ]
    assert all("stream" not in r for r in endpoint.requests)


def cached_on_repeat(value: object) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        repeat = "fruit" in json.dumps(body["messages"]) or "More?" in json.dumps(body)
        usage = {"input_tokens": 40, "cache_read_input_tokens": value if repeat else 0}
        return {**reply, "usage": usage}

    return apply


def test_prefix_cache_takes_a_single_cached_token() -> None:
    with Replying(message=cached_on_repeat(1)) as server:
        assert check_prefix_cache(client_of(server)) == "cache_read_input_tokens=1 on the repeat"


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (None, "0"), (-2, "-2")])
def test_prefix_cache_fails_without_a_cache_hit(value: object, shown: str) -> None:
    with Replying(message=cached_on_repeat(value)) as server:
        reason = failure(check_prefix_cache, server)
    usage = {"input_tokens": 40, "cache_read_input_tokens": value}
    assert reason == f"second request reports cache_read_input_tokens={shown}: {usage}"


def test_prefix_cache_fails_on_a_count_of_the_wrong_shape() -> None:
    with Replying(message=cached_on_repeat("9")) as server:
        reason = failure(check_prefix_cache, server)
    assert reason == (
        "POST /v1/messages: response of the wrong shape: usage.cache_read_input_tokens: "
        "Input should be a valid integer (got '9')"
    )


def test_prefix_cache_fails_on_a_reply_without_usage() -> None:
    with Replying(message=edit(usage=...)) as server:
        reason = failure(check_prefix_cache, server)
    assert reason == "second request reports cache_read_input_tokens=0: {}"


# ---- billing_header_prefix -----------------------------------------------------------


def _words(blocks: list[dict[str, Any]]) -> int:
    return sum(len(b["text"].split()) for b in blocks)


def test_billing_header_prefix_replays_claude_codes_turns_with_a_fresh_billing_line(
    endpoint: ScriptedAnthropic,
) -> None:
    reason = check_billing_header_prefix(client_of(endpoint))
    first, second = endpoint.requests
    # The double's prompt: <system> and the system blocks' words (the billing line left
    # out), then each message's role tag and words; turn 2 finds all of turn 1 cached.
    user, system = first["messages"]
    words = 1 + _words(first["system"][1:]) + 1 + _words(user["content"])
    words += 1 + len(system["content"].split())
    assert reason == f"turn 2 read {words} of turn 1's {words} prompt tokens from the cache"
    lines = [r["system"][0]["text"] for r in (first, second)]
    pattern = BILLING_LINE.format("([0-9a-f]{6})").replace(".", r"\.")
    found = [re.fullmatch(pattern, line) for line in lines]
    assert all(found) and lines[0] != lines[1], lines
    # Claude Code's shape, as captured: agent and prompt blocks after the billing line,
    # its tools, its role "system" entry after the user turn, metadata, adaptive thinking.
    assert first["system"][1:] == second["system"][1:]
    assert first["system"][1]["text"].startswith("You are a Claude agent")
    assert first["tools"] == second["tools"] and [t["name"] for t in first["tools"]] == ["Write"]
    assert [m["role"] for m in second["messages"]] == ["user", "system", "assistant", "user"]
    assert second["messages"][1] == system and second["messages"][3]["content"][0]["text"] == (
        "And which one is largest?"
    )
    assert all(
        r["thinking"] == {"type": "adaptive"} and r["max_tokens"] == 1 for r in (first, second)
    )
    assert all("user_id" in r["metadata"] for r in (first, second))


@pytest.mark.parametrize("turn", [0, 1, 2])
def test_claude_code_turns_move_the_cache_breakpoint_to_the_last_user_block(turn: int) -> None:
    body = claude_code_turn(turn, "m", 7)
    marked = [
        (i, j)
        for i, message in enumerate(body["messages"])
        if isinstance(message["content"], list)
        for j, block in enumerate(message["content"])
        if "cache_control" in block
    ]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "system", *["assistant", "user"] * turn]
    last = 0 if turn == 0 else len(roles) - 1  # turn 1's user turn precedes the system entry
    assert marked == [(last, len(body["messages"][last]["content"]) - 1)]
    assert (body["model"], body["max_tokens"]) == ("m", 7)


def billing_usage(
    first: dict[str, Any], second: dict[str, Any]
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        return {**reply, "usage": second if len(body["messages"]) > 2 else first}

    return apply


@pytest.mark.parametrize(
    ("first", "cached", "passes"),
    [
        ({"input_tokens": 60, "cache_creation_input_tokens": 40}, 95, True),
        ({"input_tokens": 60, "cache_creation_input_tokens": 40}, 94, False),
        ({"input_tokens": 20, "cache_read_input_tokens": 81}, 96, True),
        ({"input_tokens": 20, "cache_read_input_tokens": 81}, 95, False),
    ],
)
def test_billing_header_prefix_needs_95_percent_of_turn_one_from_the_cache(
    first: dict[str, Any], cached: int, passes: bool
) -> None:
    second = {"input_tokens": 5, "cache_read_input_tokens": cached}
    with Replying(message=billing_usage(first, second)) as server:
        client = client_of(server)
        total = sum(first.values())
        if passes:
            assert check_billing_header_prefix(client) == (
                f"turn 2 read {cached} of turn 1's {total} prompt tokens from the cache"
            )
        else:
            assert failure(check_billing_header_prefix, server) == (
                f"turn 2 read {cached} of turn 1's {total} prompt tokens from the cache "
                "(under 95%): the per-turn billing line busts the prefix"
            )


@pytest.mark.parametrize("second", [{"input_tokens": 5}, None])
def test_billing_header_prefix_is_not_exercised_without_cache_counts(
    second: dict[str, Any] | None,
) -> None:
    with Replying(message=billing_usage({"input_tokens": 9}, second or {})) as server:
        reason = not_exercised(check_billing_header_prefix, server)
    assert reason == f"the endpoint reports no cached input tokens: {second or {}}"


def test_billing_in_the_prompt_busts_the_prefix() -> None:
    # The billing line's words now count, and only <system> and its first word match.
    with ScriptedAnthropic("billing_in_prompt") as server:
        reason = failure(check_billing_header_prefix, server)
        first = server.requests[0]
    user, system = first["messages"]
    words = 1 + _words(first["system"]) + 1 + _words(user["content"])
    words += 1 + len(system["content"].split())
    assert reason == (
        f"turn 2 read 2 of turn 1's {words} prompt tokens from the cache (under 95%): the "
        "per-turn billing line busts the prefix"
    )


# ---- concurrency ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
def test_concurrency_streams_as_many_counting_requests_as_asked(n: int) -> None:
    with ScriptedAnthropic() as server:
        client = client_of(server, concurrency=n)
        assert check_concurrency(client) == f"{n} parallel streams, all valid"
    prompts = sorted(r["messages"][0]["content"] for r in server.requests)
    assert prompts == [f"Count to {i + 2}." for i in range(n)]
    assert [check for check, _ in client.streams] == ["concurrency"] * n
    assert all(r["stream"] is True for r in server.requests)


def test_concurrency_reports_how_many_broke_and_two_violations_of_the_first() -> None:
    def some(body: dict[str, Any], events: Events) -> Events:
        prompt = body["messages"][0]["content"]
        if prompt == "Count to 3.":
            return [events[0], ("a_event", {}), ("b_event", {}), ("c_event", {}), *events[1:]]
        if prompt == "Count to 5.":
            return events[:-1]
        return events

    with Replying(events=some) as server:
        reason = failure(check_concurrency, server, concurrency=4)
    assert reason == (
        "2 of 4 parallel streams broke the grammar: "
        "event 1 (a_event): unknown event type 'a_event'; "
        "event 2 (b_event): unknown event type 'b_event'"
    )


# ---- speculative ---------------------------------------------------------------------


def info(algorithm: object = "EAGLE", accept: object = 1.5, **more: Any) -> dict[str, Any]:
    return {
        "speculative_algorithm": algorithm,
        "internal_states": [{"avg_spec_accept_length": accept}],
        **more,
    }


@pytest.mark.parametrize(
    ("served", "wanted", "reason"),
    [
        (info("EAGLE"), "NEXTN", "EAGLE, average accept length 1.50"),
        (info("nextn"), "eagle", "nextn, average accept length 1.50"),
        (info("eagle3", 2), "EAGLE3", "eagle3, average accept length 2.00"),
        (
            info(None, server_args={"speculative_algorithm": "NGRAM"}),
            "ngram",
            "NGRAM, average accept length 1.50",
        ),
        (info("EAGLE", 1), "EAGLE", "EAGLE, average accept length 1.00"),
    ],
)
def test_speculative_passes_the_expected_algorithm(
    served: dict[str, Any], wanted: str, reason: str
) -> None:
    with Replying(info=served) as server:
        assert check_speculative(client_of(server, speculative_algorithm=wanted)) == reason


@pytest.mark.parametrize(
    ("served", "wanted", "reason"),
    [
        (info("EAGLE3"), "NEXTN", "server runs speculative algorithm 'EAGLE3', expected 'NEXTN'"),
        (info("NEXTN"), "NGRAM", "server runs speculative algorithm 'NEXTN', expected 'NGRAM'"),
        ({}, "EAGLE", "server runs speculative algorithm None, expected 'EAGLE'"),
        (
            {"speculative_algorithm": "EAGLE"},
            "EAGLE",
            "server reports no avg_spec_accept_length in internal_states[0]",
        ),
        (
            {"speculative_algorithm": "EAGLE", "internal_states": []},
            "EAGLE",
            "server reports no avg_spec_accept_length in internal_states[0]",
        ),
        (
            info("EAGLE", "high"),
            "EAGLE",
            "GET /get_server_info: response of the wrong shape: "
            "internal_states.0.avg_spec_accept_length: Input should be a valid number (got 'high')",
        ),
        (info("EAGLE", 0.99), "EAGLE", "average accept length 0.99 < 1.0"),
        (
            info("EAGLE", True),
            "EAGLE",
            "GET /get_server_info: response of the wrong shape: "
            "internal_states.0.avg_spec_accept_length: Input should be a valid number (got True)",
        ),
        (
            {"speculative_algorithm": "EAGLE", "internal_states": "busy"},
            "EAGLE",
            "GET /get_server_info: response of the wrong shape: internal_states: "
            "Input should be a valid array (got 'busy')",
        ),
        (
            {"speculative_algorithm": "EAGLE", "internal_states": ["busy"]},
            "EAGLE",
            "GET /get_server_info: response of the wrong shape: "
            "internal_states.0: Input should be an object (got 'busy')",
        ),
    ],
)
def test_speculative_fails_naming_what_the_server_reports(
    served: dict[str, Any], wanted: str, reason: str
) -> None:
    with Replying(info=served) as server:
        assert failure(check_speculative, server, speculative_algorithm=wanted) == reason


def test_speculative_compares_with_the_minimum_accept_length_asked() -> None:
    with Replying(info=info("EAGLE", 2.5)) as server:
        options = {"speculative_algorithm": "EAGLE", "min_accept_length": 3.0}
        assert failure(check_speculative, server, **options) == ("average accept length 2.50 < 3.0")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((404, JSON, "{}"), "GET /get_server_info: HTTP 404: {}"),
        (
            (200, "text/html", "<p>no</p>"),
            "GET /get_server_info: response is not JSON (expected value at line 1 column 1): "
            "'<p>no</p>'",
        ),
    ],
)
def test_speculative_fails_when_the_server_info_is_refused(reply: Reply, reason: str) -> None:
    with ScriptedAnthropic(replies={"GET /get_server_info": reply}) as server:
        assert failure(check_speculative, server, speculative_algorithm="EAGLE") == reason


def test_speculative_is_not_exercised_unless_expected(endpoint: ScriptedAnthropic) -> None:
    assert not_exercised(check_speculative, endpoint) == "no speculative algorithm expected"
    assert endpoint.headers == []  # not even asked


# ---- claude_code (the real CLI) ------------------------------------------------------


def test_claude_code_answers_and_is_pointed_at_the_endpoint(
    claude_cli: str, endpoint: ScriptedAnthropic
) -> None:
    # A timeout short of the default: a mutant that loses the endpoint must not wait on
    # retries against a host that cannot be reached.
    client = client_of(endpoint, claude_cli=claude_cli, timeout=30)
    assert check_claude_code(client) == "claude -p answered: 'OK'"
    # One turn and nothing else: the non-essential traffic (a second request) stays off.
    assert endpoint.routes == ["POST /v1/messages stream"]
    (request,) = endpoint.requests
    assert request["model"] == MODEL
    assert endpoint.headers[0]["x-api-key"] == "dummy"


def test_claude_code_fails_with_the_clis_own_error(claude_cli: str) -> None:
    with ScriptedAnthropic("reject_system") as server:
        reason = failure(check_claude_code, server, claude_cli=claude_cli, timeout=30)
    assert reason == "claude exited 1, is_error=True: API Error: 400 role: Input should be 'user'"


def test_claude_code_never_falls_back_to_a_request_without_streaming(claude_cli: str) -> None:
    """Claude Code retries a stream that errors without streaming, which would hide the
    very stream bugs the check is there for."""
    with ScriptedAnthropic("grammar_error_event") as server:
        reason = failure(check_claude_code, server, claude_cli=claude_cli, timeout=30)
    assert reason == (
        'claude exited 1, is_error=True: API Error: {"type":"error","error":'
        '{"type":"overloaded_error"}}'
    )
    assert server.routes and set(server.routes) == {"POST /v1/messages stream"}


def test_claude_code_fails_when_the_cli_cannot_run(tmp_path: Path) -> None:
    missing = tmp_path / "claude"
    with ScriptedAnthropic() as server:
        reason = failure(check_claude_code, server, claude_cli=str(missing))
    assert reason == f"claude CLI did not run: [Errno 2] No such file or directory: '{missing}'"
    assert server.headers == []


def test_claude_code_is_not_exercised_without_a_cli(endpoint: ScriptedAnthropic) -> None:
    assert not_exercised(check_claude_code, endpoint) == "no Claude Code CLI given (--claude-cli)"


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("true", "claude exited 0, is_error=None: "),  # exit 0 is no answer without JSON
        (
            "ls",
            "claude exited 2, is_error=None: {cli}: unrecognized option '--output-format'\n"
            "Try '{cli} --help' for more information.",
        ),
    ],
)
def test_a_claude_cli_that_is_another_program_fails(
    program: str, reason: str, endpoint: ScriptedAnthropic
) -> None:
    cli = shutil.which(program)
    assert cli is not None
    assert failure(check_claude_code, endpoint, claude_cli=cli) == reason.format(cli=cli)


@pytest.mark.parametrize("model", ["m", "m" * 300])
def test_a_claude_cli_printing_no_json_fails_with_the_tail_of_its_output(
    model: str, endpoint: ScriptedAnthropic
) -> None:
    """`echo` prints the command line smoke runs: the prompt in print mode, JSON output,
    the model; the reason keeps the last 200 characters of it."""
    cli = shutil.which("echo")
    assert cli is not None
    client = client_of(endpoint, claude_cli=cli)
    client.model = model
    with pytest.raises(Failed) as caught:
        check_claude_code(client)
    printed = f"-p Reply with the single word OK. --output-format json --model {model}\n"
    assert str(caught.value) == f"claude exited 0, is_error=None: {printed[-200:]}"
