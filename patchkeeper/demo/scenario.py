"""The embedded demo: SGLang's real Anthropic adapter (0.5.13) and four upstream fixes.

Timeline on `main`, as the nightly builder sees it:
  import 0.5.13 adapter -> #24294 squash-merged -> version bump
  -> [nightly 2026-06-21 01:47 UTC is built here]
  -> #26773 squash-merged at 04:34 (two files: schema + template layer)
  -> #28906 merged with a merge commit (builds on #26773)
  #25876 stays open, branched from the import.
So sync must report #24294 upstream, and port #26773, #28906 and #25876.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from patchkeeper.demo.history import Edit, History

ADAPTER = "python/sglang/srt/entrypoints/anthropic"
SERVING = f"{ADAPTER}/serving.py"
PROTOCOL = f"{ADAPTER}/protocol.py"
SOURCE_ROOT = PurePosixPath("/sgl-workspace/sglang")
REPOSITORY = "patchkeeper-demo/sglang"
TAG_PATTERN = r"^nightly-dev-cu13-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$"


def adapter_files() -> dict[str, bytes]:
    """The real SGLang 0.5.13 adapter files (Apache-2.0), shipped with patchkeeper."""
    folder = resources.files("patchkeeper.demo") / "files"
    return {
        f"{ADAPTER}/__init__.py": b"",
        PROTOCOL: (folder / "protocol.py.txt").read_bytes(),
        SERVING: (folder / "serving.py.txt").read_bytes(),
        "python/sglang/version.py": b'__version__ = "0.5.13"\n',
    }


TRACK_BLOCK_TYPE = [  # #24294
    Edit(
        SERVING,
        "        content_block_open = False\n        finish_reason",
        "        content_block_open = False\n"
        "        content_block_type: Optional[str] = None\n"
        "        finish_reason",
    ),
    Edit(
        SERVING,
        "                        content_block_open = True\n\n"
        "                        # Stream initial arguments if present\n",
        "                        content_block_open = True\n"
        '                        content_block_type = "tool_use"\n\n'
        "                        # Stream initial arguments if present\n",
    ),
    Edit(
        SERVING,
        "                # Start a text content block if needed\n",
        "                # A text delta must never land on an open tool_use block\n"
        '                if content_block_open and content_block_type != "text":\n'
        "                    stop_event = AnthropicStreamEvent(\n"
        '                        type="content_block_stop",\n'
        "                        index=content_block_index,\n"
        "                    )\n"
        "                    yield _wrap_sse_event(\n"
        "                        stop_event.model_dump_json(exclude_none=True),\n"
        '                        "content_block_stop",\n'
        "                    )\n"
        "                    content_block_index += 1\n"
        "                    content_block_open = False\n\n"
        "                # Start a text content block if needed\n",
    ),
    Edit(
        SERVING,
        "                    content_block_open = True\n\n                # Emit text delta\n",
        "                    content_block_open = True\n"
        '                    content_block_type = "text"\n\n'
        "                # Emit text delta\n",
    ),
]

SYSTEM_IN_MESSAGES = [  # #26773: the schema half and the template half
    Edit(
        PROTOCOL,
        '    role: Literal["user", "assistant"]\n',
        '    role: Literal["user", "assistant", "system"]\n',
    ),
    Edit(
        SERVING,
        "        # Convert messages\n        for msg in anthropic_request.messages:\n",
        '        # Claude Code sends role "system" entries inside messages; most chat\n'
        "        # templates accept a system turn only first, so hoist their text.\n"
        "        hoisted = [\n"
        "            msg.content\n"
        "            if isinstance(msg.content, str)\n"
        '            else "\\n".join(b.text for b in msg.content if b.type == "text" and b.text)\n'
        "            for msg in anthropic_request.messages\n"
        '            if msg.role == "system"\n'
        "        ]\n"
        "        if hoisted:\n"
        '            if openai_messages and openai_messages[0]["role"] == "system":\n'
        '                openai_messages[0]["content"] += "\\n" + "\\n".join(hoisted)\n'
        "            else:\n"
        "                openai_messages.insert(\n"
        '                    0, {"role": "system", "content": "\\n".join(hoisted)}\n'
        "                )\n\n"
        "        # Convert messages\n"
        "        for msg in anthropic_request.messages:\n"
        '            if msg.role == "system":\n'
        "                continue\n",
    ),
]

INLINE_SYSTEM = [  # #28906, on top of #26773
    Edit(
        SERVING,
        "        if hoisted:\n",
        '        inline = getattr(self, "template_renders_inline_system", False)\n'
        "        if hoisted and not inline:\n",
    ),
    Edit(
        SERVING,
        '            if msg.role == "system":\n                continue\n',
        '            if msg.role == "system" and not inline:\n                continue\n',
    ),
]

TOOL_ARGUMENTS = [  # #25876
    Edit(
        SERVING,
        "                except (json.JSONDecodeError, TypeError):\n"
        "                    tool_input = {}\n",
        "                except (json.JSONDecodeError, TypeError):\n"
        "                    logger.warning(\n"
        '                        "tool call %s: arguments are not JSON", tool_call.id\n'
        "                    )\n"
        '                    tool_input = {"_raw_arguments": tool_call.function.arguments or ""}\n',
    ),
]


@dataclass(frozen=True)
class DemoUpstream:
    history: History
    url: str
    nightly_commit: str
    tag: str


def build_upstream(workdir: Path) -> DemoUpstream:
    history = History(workdir / "work", adapter_files())
    base = history.head()
    history.squash_pr(24294, "[Anthropic] Track the open content block's type", TRACK_BLOCK_TYPE)
    nightly = history.commit(
        "Bump version to 0.5.13.post1",
        [Edit("python/sglang/version.py", '"0.5.13"', '"0.5.13.post1"')],
    )
    history.squash_pr(26773, "[Anthropic] Accept role system inside messages", SYSTEM_IN_MESSAGES)
    history.merge_pr(28906, "[Anthropic] Pass inline system turns through", INLINE_SYSTEM)
    history.open_pr(25876, "[Anthropic] Keep malformed tool arguments", TOOL_ARGUMENTS, base)
    url = history.publish(workdir / "upstream.git")
    return DemoUpstream(history, url, nightly, f"nightly-dev-cu13-20260621-{nightly[:8]}")
