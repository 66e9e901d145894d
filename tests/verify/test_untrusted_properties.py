"""Property-based tests of what reads and writes untrusted text in smoke and verify: any
reply a server sends is a pass or a failed check, never an exception; any stream gives
violations, never an exception; whatever a reason holds, the terminal table carries no
control characters and the JUnit file parses."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from patchkeeper.verify import reporting
from patchkeeper.verify.replies import BadReply, Message, Models, ServerInfo, TokenCount, parse
from patchkeeper.verify.smoke import CheckResult, SmokeOptions, Status, run_suite
from patchkeeper.verify.sse import parse_events, validate
from tests.verify.anthropic_double import ScriptedAnthropic

# The fields the checks and the grammar read, so that generated JSON often has them.
FIELDS = [
    "type",
    "role",
    "content",
    "stop_reason",
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "data",
    "id",
    "speculative_algorithm",
    "server_args",
    "internal_states",
    "avg_spec_accept_length",
    "index",
    "content_block",
    "delta",
    "text",
    "thinking",
    "partial_json",
    "message",
    "error",
    "input",
]
EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "tool_use",
]
keys = st.sampled_from(FIELDS) | st.text(max_size=4)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from(EVENT_TYPES)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=24,
)
objects = st.dictionaries(keys, json_values, max_size=6)

# (route, the check that reads it)
READERS = [
    ("GET /v1/models", "models_list"),
    ("POST /v1/messages", "messages_basic"),
    ("POST /v1/messages", "prefix_cache"),
    ("POST /v1/messages", "billing_header_prefix"),
    ("POST /v1/messages/count_tokens", "count_tokens"),
    ("GET /get_server_info", "speculative"),
]


def test_any_json_a_server_replies_is_a_pass_or_a_failed_check_never_an_exception() -> None:
    with ScriptedAnthropic() as server:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.sampled_from(READERS), json_values | objects)
        def replying(reader: tuple[str, str], value: Any) -> None:
            route, check = reader
            server.replies = {route: (200, "application/json", json.dumps(value))}
            options = SmokeOptions(server.url, speculative_algorithm="EAGLE", prefix_rules=2)
            (result,) = run_suite(options, [check])
            assert result.status in Status and isinstance(result.reason, str)

        replying()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([Message, Models, TokenCount, ServerInfo]),
    st.binary(max_size=64) | (json_values | objects).map(lambda v: json.dumps(v).encode()),
)
def test_any_bytes_parse_into_the_shape_or_a_clear_bad_reply(shape: Any, body: bytes) -> None:
    try:
        parse(shape, body, "GET /x")
    except BadReply as err:
        assert str(err).startswith("GET /x: response ")


def event_texts() -> st.SearchStrategy[tuple[str, str]]:
    """(SSE event name, data text): mostly typed events with any fields, some garbage."""
    typed = st.tuples(st.sampled_from(EVENT_TYPES), objects).map(
        lambda pair: (pair[0], json.dumps({**pair[1], "type": pair[0]}))
    )
    raw = st.tuples(st.sampled_from(EVENT_TYPES) | st.text(max_size=5), st.text(max_size=20))
    any_json = st.tuples(st.sampled_from(EVENT_TYPES), json_values.map(json.dumps))
    return typed | raw | any_json


@settings(max_examples=200, deadline=None)
@given(st.lists(event_texts(), max_size=12))
def test_any_stream_gives_a_report_never_an_exception(raw: list[tuple[str, str]]) -> None:
    events, problems = parse_events(raw)
    report = validate(events)
    assert all(isinstance(v, str) for v in [*problems, *report.violations])
    assert isinstance(report.text(), str)
    assert isinstance(report.usage.prompt_tokens(), int)


# Any character at all, surrogates and controls included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
results = st.builds(CheckResult, any_text, st.sampled_from(list(Status)), any_text)
C0_C1_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@settings(max_examples=150, deadline=None)
@given(st.lists(results, max_size=4), any_text)
def test_the_table_never_carries_a_control_character(found: list[CheckResult], title: str) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None)
    reporting.print_table(found, console, title)
    assert not C0_C1_BUT_NEWLINE.search(buffer.getvalue()), repr(buffer.getvalue())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(found=st.lists(results, max_size=4), suite=any_text)
def test_the_junit_file_always_parses(found: list[CheckResult], suite: str, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    reporting.write_junit(found, path, suite)
    root = ET.parse(path).getroot()
    assert [case.get("name") for case in root.iter("testcase")] == [
        reporting.xml_text(r.name) for r in found
    ]
