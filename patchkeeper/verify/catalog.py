"""The names and bounds the command line offers for verification, without importing what runs them.

Kept apart from `smoke` and `tiers` (HTTP clients, the engine, compose) so that
`patchkeeper --help` and shell completion start instantly; a test holds
`CHECK_NAMES` to the checks `smoke` really has.
"""

from __future__ import annotations

from enum import StrEnum

CHECK_NAMES = (
    "messages_basic",
    "models_list",
    "count_tokens",
    "mid_conversation_system",
    "tool_stream_blocks",
    "thinking_disabled",
    "prefix_cache",
    "billing_header_prefix",
    "concurrency",
    "speculative",
    "claude_code",
    "sse_grammar",
)

# Bounds on a server under test, the smoke command's defaults.
CHECK_DEADLINE_S = 900.0  # the longest any one check may take, all in all
STREAM_DEADLINE_S = 300.0  # the longest one reply (a stream, a body) may take
MAX_REPLY_BYTES = 32 * 2**20  # the most bytes one reply may have


class Runtime(StrEnum):
    """Where verify runs SGLang: `auto` picks the image when the engine has it."""

    AUTO = "auto"
    IMAGE = "image"
    HOST = "host"
