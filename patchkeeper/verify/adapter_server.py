"""Serve SGLang's real Anthropic adapter over HTTP in front of a scripted chat engine.

This is the runtime of the "adapter tier" of `patchkeeper verify`. It runs under the
python of an sglang venv (see `sglang_env.py`), never under patchkeeper's own, so it
imports only the standard library and what that venv has. It must not import
`patchkeeper`.

What is real and what is stood in:

* Real, executed from the installed (possibly overlaid) sglang package:
  `sglang.srt.entrypoints.anthropic.{serving,protocol}` and the OpenAI protocol models.
* Real, lifted out of sglang source files whose module-level imports need torch (see
  `_lift`): the `/v1/messages` and `/v1/messages/count_tokens` route handlers, the
  exception handlers and the request class of `http_server.py`; the chat-template
  helpers (`detect_jinja_template_content_format`, `process_content_for_template_format`,
  `normalize_tool_content`, ...) and `detect_inline_system_support`.
* Stood in: `OpenAIServingChat` (`ScriptedChat` below). It renders the converted
  conversation through the Jinja template as `tokenizer.apply_chat_template` would,
  then "generates" a scripted completion, streamed the way SGLang launched with
  `--reasoning-parser qwen3 --tool-call-parser qwen3_coder` streams it;
  `--enable-cache-report` means what it means to SGLang (off by default). It has only
  the members the installed `OpenAIServingChat` class has, so a partial port (an
  adapter that calls what its serving_chat.py lacks) fails here as in the real server.

    python adapter_server.py --port P --chat-template FILE [--script default]
        [--served-model-name NAME] [--context-length N] [--enable-cache-report]
        [--host ADDR] [--model-path PATH]

It takes `sglang.launch_server`'s address and model flags (the model path is, as
there, the default served model name), so a recipe's service can run it in place of
the real server: that is how the boot tier's compose path is tested without a GPU.

The default script (deterministic; one delta is counted as one completion token):

* Thinking: unless the request turned it off (`chat_template_kwargs.enable_thinking`
  is false, which the 0.5.23 adapter sets for `thinking: {"type": "disabled"}`) or the
  rendered prompt already closes a think block (a no-thinking Qwen3 template), the
  answer starts with the literal text `<think>\\nScripted reasoning.\\n</think>\\n\\n`,
  less the opening tag when the prompt itself ends with it (Qwen3.5/3.6 templates).
  It stays literal content on purpose, not `reasoning_content`: an adapter that ignores
  `thinking` then shows it to the client, which is what a thinking-disabled witness
  looks for. The adapter's own thinking-block path is therefore not exercised.
* Every answer says `Markers seen: ...` listing each distinct `MARKER-<x>` token of the
  rendered prompt (or `none`): a witness proves a system entry reached the model by
  putting a marker only there.
* Tool turn, when the request offers tools (tool_choice not "none") and no tool result
  came after the last assistant turn: a text delta, tool call 0 (a delta with id+name and
  empty arguments, then "{", one delta per argument, "}"), a "\\n" content delta (what
  the qwen3_coder parser emits between `</tool_call>` and `<tool_call>`), tool call 1,
  then finish_reason "tool_calls". After tool results the model answers in text, so an
  agent client does not loop. Arguments are the tools' required properties, filled
  by JSON type ("scripted", 1, false, [], {} or the first enum value).
* Otherwise a short text answer, finish_reason "stop".
* Usage: prompt_tokens is the rendered prompt's whitespace-token count; cached_tokens
  is its longest common token prefix with an earlier generated prompt, capped at
  prompt_tokens - 1 (a radix cache that keeps prompts), reported in
  `prompt_tokens_details` only with `--enable-cache-report`, as in SGLang. With
  `continuous_usage_stats` every payload delta carries usage, as in SGLang. The 0.5.23
  adapter maps cached_tokens to `cache_read_input_tokens`; 0.5.13 has no mapping.
"""

# patchkeeper's own venv has none of this script's third-party imports (they live in the
# sglang venv), so mypy there can neither resolve them nor see their types.
# mypy: disable-error-code="import-not-found,misc,untyped-decorator"

from __future__ import annotations

import argparse
import ast
import asyncio
import builtins
import copy
import hashlib
import importlib.util
import json
import logging
import re
import sys
import types
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

logger = logging.getLogger("patchkeeper.adapter_server")

# Members of OpenAIServingChat that only some sglang versions have; the stand-in
# exposes each one only when the installed class does.
OPTIONAL_MEMBERS = (
    "supports_inline_system",
    "apply_reasoning_enabled",
    "supports_native_reasoning_history",
    "wrap_reasoning_history",
)
MARKER = re.compile(r"MARKER-[A-Za-z0-9_-]+")
THINK_TEXT = ("<think>\n", "Scripted reasoning.", "\n</think>\n\n")
CACHE_SLOTS = 64


# --------------------------------------------------------------------------------------
# Importing sglang without torch
# --------------------------------------------------------------------------------------


def _bootstrap_sglang() -> Path:
    """Make `sglang.*` importable without running `sglang/__init__.py`.

    That file (the frontend language API and HF patches) pulls torch, triton and
    torchvision; none of it is on the adapter path. A bare package module with the
    same __path__ lets the submodules import normally, from wherever `sglang` is
    found first (an overlay copy on PYTHONPATH wins over the venv's own).
    """
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("adapter_server: sglang is not importable from this python")
    package = types.ModuleType("sglang")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = "sglang"
    sys.modules["sglang"] = package
    return Path(package.__path__[0])


def _defined_names(node: ast.AST) -> set[str]:
    """Names a definition binds locally (parameters and assignments), not globals."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
    return names


def _free_names(node: ast.AST) -> set[str]:
    loaded = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        loaded -= _defined_names(node) - {node.name}
    return loaded - set(dir(builtins))


def _top_level_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id
    return None


def _lift(
    source: Path,
    names: Iterable[str],
    namespace: dict[str, Any],
    *,
    module: str,
    optional: Iterable[str] = (),
) -> dict[str, Any]:
    """Execute sglang's own top-level definitions `names` from `source` into `namespace`.

    Used for files that cannot be imported whole because their module-level imports
    need torch. Top-level definitions they use are lifted too (transitively); other
    free names are bound by re-running only the file's own import statements that
    bind them. Anything already in `namespace` (e.g. `app`) is taken from there, which
    is how decorators such as `@app.post(...)` register on our application. Source
    order is kept, so two handlers sharing a name register in the real order.
    """
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    by_name: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        name = _top_level_name(node)
        if name is not None:
            by_name.setdefault(name, []).append(node)
    wanted = [n for n in (*names, *optional) if n in by_name]
    missing = sorted(set(names) - set(wanted))
    if missing:
        raise SystemExit(f"adapter_server: {source} defines no {', '.join(missing)}")

    chosen, needed = _closure(by_name, wanted, namespace)
    imports = _imports_binding(tree, needed)
    body = imports + [n for n in tree.body if _top_level_name(n) in chosen]
    namespace.setdefault("__name__", module)
    code = compile(
        ast.fix_missing_locations(ast.Module(body=body, type_ignores=[])), str(source), "exec"
    )
    exec(code, namespace)
    return namespace


def _closure(
    by_name: dict[str, list[ast.stmt]], wanted: list[str], namespace: dict[str, Any]
) -> tuple[set[str], set[str]]:
    """The top-level definitions `wanted` needs (transitively), and the free names left
    for the file's imports to bind (those not in `namespace` already)."""
    chosen: set[str] = set()
    needed: set[str] = set()
    pending = list(wanted)
    while pending:
        name = pending.pop()
        if name in chosen:
            continue
        chosen.add(name)
        for node in by_name[name]:
            for free in _free_names(node):
                if free in namespace or free in chosen:
                    continue
                if free in by_name:
                    pending.append(free)
                else:
                    needed.add(free)
    return chosen, needed


def _imports_binding(tree: ast.Module, needed: set[str]) -> list[ast.stmt]:
    """The file's own import statements, cut down to the aliases that bind `needed`."""
    imports: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            aliases = [a for a in node.names if (a.asname or a.name.split(".")[0]) in needed]
            if aliases:
                imports.append(ast.Import(names=aliases))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            aliases = [a for a in node.names if (a.asname or a.name) in needed]
            if aliases:
                imports.append(ast.ImportFrom(module=node.module, names=aliases, level=node.level))
    return imports


def _provide_imports(sglang_dir: Path, importer: Path) -> None:
    """Make each module-level `from sglang.X import a, b` of `importer` resolvable.

    Every module is first imported for real. Where that fails (torch or the GPU
    stack somewhere below it: which modules do differs from release to release), a
    module of that name is made from `a` and `b` lifted out of its source instead.
    """
    tree = ast.parse(importer.read_text(encoding="utf-8"), filename=str(importer))
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
            continue
        if not node.module.startswith("sglang.") or node.module in sys.modules:
            continue
        try:
            importlib.import_module(node.module)
        except Exception as error:  # whatever the GPU stack raises
            parts = node.module.split(".")[1:]
            source = sglang_dir.joinpath(*parts).with_suffix(".py")
            if not source.is_file():
                source = sglang_dir.joinpath(*parts, "__init__.py")
            if not source.is_file():
                raise
            logger.info("lifting %s out of %s (%s)", node.names, node.module, error)
            module = types.ModuleType(node.module)
            module.__file__ = str(source)
            _lift(source, [a.name for a in node.names], module.__dict__, module=node.module)
            sys.modules[node.module] = module


def _class_members(source: Path, class_name: str) -> set[str]:
    """Methods and `self.<attr> =` assignments of a class, read from its source."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            members: set[str] = set()
            for sub in ast.walk(node):
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    members.add(sub.name)
                elif (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.ctx, ast.Store)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                ):
                    members.add(sub.attr)
            return members
    raise SystemExit(f"adapter_server: {source} defines no class {class_name}")


# --------------------------------------------------------------------------------------
# Chat template, rendered as transformers' apply_chat_template renders it
# --------------------------------------------------------------------------------------


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` as transformers' AssistantTracker parses
    it; only assistant-mask bookkeeping is left out, the body renders unchanged."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


def compile_template(text: str) -> jinja2.Template:
    """The environment of transformers' `_compile_jinja_template`."""

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(text)


def load_template_text(path: Path) -> str:
    # Exactly TemplateManager._load_jinja_template: strip newlines at both ends and turn
    # literal backslash-n into newlines (templates copied out of JSON keep them escaped).
    with open(path) as f:
        text = "".join(f.readlines()).strip("\n")
    return text.replace("\\n", "\n")


def _no_media(*_args: Any, **_kwargs: Any) -> Any:
    raise ValueError(
        "the adapter tier is text-only: image, audio and video parts are not supported"
    )


@dataclass
class Helpers:
    """sglang's own message-preparation helpers, lifted from the installed sources."""

    content_format: str
    process_content: Any
    normalize_tool_content: Any
    normalize_tool_call_arguments: Any
    detect_inline_system_support: Any


def load_helpers(sglang_dir: Path, template: str, surface: set[str]) -> Helpers:
    utils = _lift(
        sglang_dir / "srt/parser/jinja_template_utils.py",
        ["detect_jinja_template_content_format", "process_content_for_template_format"],
        {
            "hf_chat_utils": types.SimpleNamespace(_compile_jinja_template=compile_template),
            "ImageData": _no_media,
            "VideoData": _no_media,
            "GLM_MEDIA_CONFIG_KEYS": (),
        },
        module="sglang.srt.parser.jinja_template_utils",
    )
    chat = _lift(
        sglang_dir / "srt/entrypoints/openai/serving_chat.py",
        [],
        {},
        module="sglang.srt.entrypoints.openai.serving_chat",
        optional=["normalize_tool_content", "normalize_assistant_tool_call_arguments"],
    )
    detect_inline = None
    if "supports_inline_system" in surface:
        detect_inline = _lift(
            sglang_dir / "srt/parser/template_detection.py",
            ["detect_inline_system_support"],
            {},
            module="sglang.srt.parser.template_detection",
        )["detect_inline_system_support"]
    return Helpers(
        content_format=utils["detect_jinja_template_content_format"](template),
        process_content=utils["process_content_for_template_format"],
        # Before 0.5.11 tool message content reached the template as sent.
        normalize_tool_content=chat.get("normalize_tool_content") or _content_as_sent,
        normalize_tool_call_arguments=chat.get("normalize_assistant_tool_call_arguments")
        or _parse_tool_call_arguments_0_5_13,
        detect_inline_system_support=detect_inline,
    )


def _content_as_sent(_role: str, content: Any) -> Any:
    return content


def _parse_tool_call_arguments_0_5_13(message: dict[str, Any]) -> None:
    # Before normalize_assistant_tool_call_arguments existed, _apply_jinja_template did
    # this inline: templates expect arguments as a dict, OpenAI sends a JSON string.
    if message.get("role") == "assistant" and isinstance(message.get("tool_calls"), list):
        for item in message["tool_calls"]:
            function = item.get("function") or {}
            if isinstance(function.get("arguments"), str):
                function["arguments"] = json.loads(function["arguments"])


# --------------------------------------------------------------------------------------
# The scripted engine
# --------------------------------------------------------------------------------------


@dataclass
class Processed:
    """The part of sglang's MessageProcessingResult that the adapter reads (count_tokens)."""

    prompt: str
    prompt_ids: list[str]


@dataclass
class Generation:
    """What `_convert_to_internal_request` hands on: stands in for GenerateReqInput.

    The adapter sets timing attributes on it (received_time, ...); a plain dataclass
    takes them."""

    prompt: str
    prompt_ids: list[str]
    thinking: bool
    think_opened: bool  # the generation prompt already ends with "<think>"
    tools: list[dict[str, Any]]
    answers_tool_result: bool  # a tool message follows the last assistant turn
    rid: str


@dataclass
class ToolCallPlan:
    id: str
    name: str
    arguments: dict[str, Any]

    def fragments(self) -> list[str]:
        # What the qwen3_coder parser streams: "{", one `"key": value` per parameter
        # (comma-led after the first), "}".
        parts = ["{"]
        for i, (key, value) in enumerate(self.arguments.items()):
            pair = f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
            parts.append(pair if i == 0 else f", {pair}")
        parts.append("}")
        return parts


@dataclass
class Completion:
    text: list[str]
    tool_calls: list[ToolCallPlan]

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


def _example_value(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    examples: dict[str, Any] = {
        "integer": 1,
        "number": 1,
        "boolean": False,
        "array": [],
        "object": {},
    }
    return examples.get(str(kind), "scripted")


def _tool_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    return {
        name: _example_value(properties.get(name) or {}) for name in schema.get("required") or []
    }


def default_script(generation: Generation) -> Completion:
    markers = list(dict.fromkeys(MARKER.findall(generation.prompt)))
    seen = f"Markers seen: {' '.join(markers) if markers else 'none'}."
    think: list[str] = []
    if generation.thinking:
        think = list(THINK_TEXT[1:] if generation.think_opened else THINK_TEXT)
    if generation.tools and not generation.answers_tool_result:
        digest = hashlib.sha256(generation.prompt.encode()).hexdigest()
        calls = []
        for i in range(2):
            tool = generation.tools[i % len(generation.tools)]
            name = tool.get("function", tool)["name"]
            calls.append(
                ToolCallPlan(f"call_{digest[i * 24 : (i + 1) * 24]}", name, _tool_arguments(tool))
            )
        return Completion([*think, "Calling two tools. ", seen, "\n\n"], calls)
    return Completion([*think, "Scripted reply. ", seen], [])


SCRIPTS = {"default": default_script}


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixCache:
    """Remembers recent prompts; a hit is the longest shared leading token run."""

    def __init__(self) -> None:
        self._prompts: list[list[str]] = []

    def lookup_and_insert(self, tokens: list[str]) -> int:
        hit = max((_common_prefix(tokens, p) for p in self._prompts), default=0)
        self._prompts = [*self._prompts[-(CACHE_SLOTS - 1) :], tokens]
        return max(0, min(hit, len(tokens) - 1))


class _Tokenizer:
    """Whitespace tokens: deterministic, and enough for counts and prefix matching."""

    def encode(self, text: str, **_kwargs: Any) -> list[str]:
        return text.split()


class _TokenizerManager:
    def __init__(self, tokenizer: _Tokenizer, model_name: str, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.served_model_name = model_name
        self.model_config = types.SimpleNamespace(is_multimodal=False, context_len=context_length)

    def create_abort_task(self, _request: Any) -> None:
        # The real one returns a BackgroundTask that aborts the engine request when the
        # client goes away; a scripted generation has nothing to abort.
        return None


def _answers_tool_result(roles: list[str]) -> bool:
    # Clients may add text after tool results in the same user turn, so look at the
    # whole stretch since the assistant last spoke, not just the final message.
    since = roles[len(roles) - roles[::-1].index("assistant") :] if "assistant" in roles else roles
    return "tool" in since


class ScriptedChat:
    """Stands in for OpenAIServingChat; see the module docstring."""

    def __init__(
        self,
        template: str,
        helpers: Helpers,
        script: Any,
        model_name: str,
        context_length: int,
        protocol: Any,
        cache_report: bool,
    ) -> None:
        self.tokenizer_manager = _TokenizerManager(_Tokenizer(), model_name, context_length)
        self._compiled = compile_template(template)
        self._helpers = helpers
        self._script = script
        self._context_length = context_length
        self._p = protocol
        self._cache = PrefixCache()
        self._cache_report = cache_report
        if helpers.detect_inline_system_support is not None:
            self.supports_inline_system = helpers.detect_inline_system_support(template)

    # ---- request side -----------------------------------------------------------------

    def _validate_request(self, request: Any) -> str | None:
        # The subset of OpenAIServingChat._validate_request that an Anthropic request can
        # trip; tool JSON-schema checks are left out (they need jsonschema).
        if not request.messages:
            return "Messages cannot be empty."
        choice = request.tool_choice
        if isinstance(choice, str) and choice.lower() == "required" and not request.tools:
            return "Tools cannot be empty if tool choice is set to required."
        if choice is not None and not isinstance(choice, str):
            if not request.tools:
                return "Tools cannot be empty if tool choice is set to a specific tool."
            name = choice.function.name
            if not any(tool.function.name == name for tool in request.tools):
                return f"Tool '{name}' not found in tools list."
        max_output = request.max_completion_tokens or request.max_tokens
        if max_output and max_output > self._context_length:
            return (
                f"max_completion_tokens is too large: {max_output}."
                f"This model supports at most {self._context_length} completion tokens."
            )
        return None

    def _template_tools(self, request: Any) -> list[dict[str, Any]] | None:
        if not request.tools or request.tool_choice == "none":
            return None
        if not isinstance(request.tool_choice, str):
            name = request.tool_choice.function.name
            return [t.model_dump() for t in request.tools if t.function.name == name] or None
        return [t.model_dump() for t in request.tools]

    def _render(self, messages: list[dict[str, Any]], tools: Any, kwargs: dict[str, Any]) -> str:
        return str(
            self._compiled.render(
                messages=messages, tools=tools, documents=None, add_generation_prompt=True, **kwargs
            )
        )

    def _process_messages(self, request: Any, is_multimodal: bool = False, **_: Any) -> Processed:
        helpers = self._helpers
        messages = []
        for message in request.messages:
            item = message.model_dump()
            if item.get("content") is None:
                item["content"] = ""
            helpers.normalize_tool_call_arguments(item)
            item = helpers.process_content(item, helpers.content_format, [], [], [], [])
            item["content"] = helpers.normalize_tool_content(item["role"], item.get("content"))
            messages.append(item)
        kwargs: dict[str, Any] = {}
        if request.reasoning_effort is not None:
            kwargs["reasoning_effort"] = request.reasoning_effort
        kwargs.update(request.chat_template_kwargs or {})
        tools = self._template_tools(request)
        # _apply_jinja_template's two attempts: any failure retries with bare function
        # schemas (Mistral-style templates); a template error or TypeError on the retry
        # becomes ValueError, which callers turn into a client error, or not (0.5.13's
        # Anthropic adapter answers 500 to anything raised here).
        try:
            prompt = self._render(messages, tools, kwargs)
        except Exception:
            flat = [t.get("function", t) for t in tools] if tools else None
            try:
                prompt = self._render(copy.deepcopy(messages), flat, kwargs)
            except (jinja2.TemplateError, TypeError) as error:
                raise ValueError(str(error)) from error
        prompt_ids = self.tokenizer_manager.tokenizer.encode(prompt)
        return Processed(prompt=prompt, prompt_ids=prompt_ids)

    def _convert_to_internal_request(
        self, request: Any, raw_request: Any = None
    ) -> tuple[Generation, Any]:
        effort = (request.chat_template_kwargs or {}).pop("reasoning_effort", None)
        if effort is not None:
            request.reasoning_effort = effort
        processed = self._process_messages(request, False)
        turned_off = (request.chat_template_kwargs or {}).get("enable_thinking") is False
        # A no-thinking Qwen3 template ends its generation prompt with an empty think block;
        # Qwen3.5/3.6 templates open the block themselves when thinking is on.
        tail = processed.prompt.rstrip()
        closed_by_template = tail.endswith("</think>")
        tools = self._template_tools(request) or []
        generation = Generation(
            prompt=processed.prompt,
            prompt_ids=processed.prompt_ids,
            thinking=not (turned_off or closed_by_template),
            think_opened=tail.endswith("<think>"),
            tools=tools,
            answers_tool_result=_answers_tool_result([m.role for m in request.messages]),
            rid=hashlib.sha256(processed.prompt.encode()).hexdigest()[:32],
        )
        return generation, request

    # ---- generation side --------------------------------------------------------------

    def _usage(self, prompt_tokens: int, completion_tokens: int, cached: int) -> Any:
        p = self._p
        return p.UsageInfo(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            prompt_tokens_details=(
                p.PromptTokensDetails(cached_tokens=cached) if self._cache_report else None
            ),
        )

    def _chunk(self, generation: Generation, request: Any, **choice: Any) -> Any:
        p = self._p
        usage = choice.pop("usage", None)
        delta = p.DeltaMessage(**choice.pop("delta", {}))
        return p.ChatCompletionStreamResponse(
            id=generation.rid,
            model=request.model,
            choices=[p.ChatCompletionResponseStreamChoice(index=0, delta=delta, **choice)],
            usage=usage,
        )

    def _deltas(self, completion: Completion) -> list[dict[str, Any]]:
        p = self._p
        deltas: list[dict[str, Any]] = [{"content": text} for text in completion.text]
        for i, call in enumerate(completion.tool_calls):
            if i:
                deltas.append({"content": "\n"})
            head = p.FunctionResponse(name=call.name, arguments="")
            deltas.append({"tool_calls": [p.ToolCall(id=call.id, index=i, function=head)]})
            for fragment in call.fragments():
                args = p.FunctionResponse(arguments=fragment)
                deltas.append({"tool_calls": [p.ToolCall(index=i, function=args)]})
        return deltas

    async def _generate_chat_stream(
        self, generation: Generation, request: Any, raw_request: Any = None
    ) -> AsyncIterator[str]:
        completion = self._script(generation)
        cached = self._cache.lookup_and_insert(generation.prompt_ids)
        prompt_tokens = len(generation.prompt_ids)
        options = request.stream_options
        include_usage = bool(options and options.include_usage)
        continuous = bool(options and getattr(options, "continuous_usage_stats", False))

        def line(chunk: Any) -> str:
            return f"data: {chunk.model_dump_json()}\n\n"

        yield line(self._chunk(generation, request, delta={"role": "assistant", "content": ""}))
        deltas = self._deltas(completion)
        for n, delta in enumerate(deltas, start=1):
            usage = self._usage(prompt_tokens, n, cached) if continuous else None
            yield line(self._chunk(generation, request, delta=delta, usage=usage))
            await asyncio.sleep(0)
        yield line(self._chunk(generation, request, finish_reason=completion.finish_reason))
        if include_usage:
            usage = self._usage(prompt_tokens, len(deltas), cached)
            chunk = self._p.ChatCompletionStreamResponse(
                id=generation.rid, model=request.model, choices=[], usage=usage
            )
            yield line(chunk)
        yield "data: [DONE]\n\n"

    async def _handle_non_streaming_request(
        self, generation: Generation, request: Any, raw_request: Any = None
    ) -> Any:
        p = self._p
        completion = self._script(generation)
        cached = self._cache.lookup_and_insert(generation.prompt_ids)
        calls = [
            p.ToolCall(
                id=c.id,
                index=i,
                function=p.FunctionResponse(name=c.name, arguments="".join(c.fragments())),
            )
            for i, c in enumerate(completion.tool_calls)
        ]
        # Non-streaming parsers keep only the text before the first tool call.
        text = "".join(completion.text)
        message = p.ChatMessage(role="assistant", content=text or None, tool_calls=calls or None)
        choice = p.ChatCompletionResponseChoice(
            index=0, message=message, finish_reason=completion.finish_reason
        )
        return p.ChatCompletionResponse(
            id=generation.rid,
            model=request.model,
            choices=[choice],
            usage=self._usage(len(generation.prompt_ids), len(self._deltas(completion)), cached),
        )


class _Qwen3Reasoning:
    """Optional members, as OpenAIServingChat behaves with `--reasoning-parser qwen3`."""

    def apply_reasoning_enabled(self, request: Any, enabled: bool) -> None:
        # qwen3's detector toggles through the `enable_thinking` template kwarg.
        request.chat_template_kwargs = {
            **(request.chat_template_kwargs or {}),
            "enable_thinking": enabled,
        }

    def supports_native_reasoning_history(self) -> bool:
        return False

    def wrap_reasoning_history(self, reasoning_text: str) -> str:
        return f"<think>{reasoning_text}\n</think>"


def stand_in_class(surface: set[str]) -> type[ScriptedChat]:
    methods = {
        name: getattr(_Qwen3Reasoning, name)
        for name in OPTIONAL_MEMBERS
        if name in surface and hasattr(_Qwen3Reasoning, name)
    }
    return type("OpenAIServingChatStandIn", (ScriptedChat,), methods)


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


def build_app(args: argparse.Namespace) -> Any:
    sglang_dir = _bootstrap_sglang()
    from fastapi import FastAPI, Response
    from fastapi.responses import ORJSONResponse

    adapter = sglang_dir / "srt/entrypoints/anthropic"
    if not (adapter / "serving.py").is_file():
        raise SystemExit(f"adapter_server: this sglang has no Anthropic adapter ({adapter})")
    for importer in ("protocol.py", "serving.py"):
        _provide_imports(sglang_dir, adapter / importer)

    import sglang.srt.entrypoints.openai.protocol as protocol
    from sglang.srt.entrypoints.anthropic.serving import AnthropicServing

    template = load_template_text(Path(args.chat_template))
    openai_dir = sglang_dir / "srt/entrypoints/openai"
    surface = _class_members(openai_dir / "serving_chat.py", "OpenAIServingChat")
    surface |= _class_members(openai_dir / "serving_base.py", "OpenAIServingBase")
    helpers = load_helpers(sglang_dir, template, surface)
    chat = stand_in_class(surface)(
        template,
        helpers,
        SCRIPTS[args.script],
        args.served_model_name,
        args.context_length,
        protocol,
        args.enable_cache_report,
    )

    app = FastAPI(openapi_url=None)
    server_py = sglang_dir / "srt/entrypoints/http_server.py"
    module = "sglang.srt.entrypoints.http_server"
    # Newer http_servers parse request bodies with orjson (stricter than json) on every
    # route; like them, set the route class before any route exists.
    route = _lift(server_py, [], {}, module=module, optional=["ORJSONRoute"]).get("ORJSONRoute")
    if route is not None:
        app.router.route_class = route
    # http_server's own handlers, registered on this app by their own decorators.
    handlers = [
        "validate_json_request",
        "validation_exception_handler",
        "anthropic_v1_messages",
        "anthropic_v1_count_tokens",
    ]
    _lift(server_py, handlers, {"app": app}, module=module)
    app.state.anthropic_serving = AnthropicServing(chat)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models", response_class=ORJSONResponse)
    async def available_models() -> Any:
        card = protocol.ModelCard(
            id=args.served_model_name,
            root=args.served_model_name,
            max_model_len=args.context_length,
        )
        return protocol.ModelList(data=[card])

    logger.info(
        "sglang %s from %s; stand-in members: %s; inline system: %s; content format: %s",
        _sglang_version(),
        sglang_dir,
        ", ".join(sorted(m for m in OPTIONAL_MEMBERS if m in surface)) or "none of the optional",
        getattr(chat, "supports_inline_system", "n/a"),
        helpers.content_format,
    )
    return app


def _sglang_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sglang")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SGLang's Anthropic adapter, scripted engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chat-template", required=True, help="Jinja chat template file")
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="default")
    parser.add_argument("--model-path", default="default", help="default served model name")
    parser.add_argument("--served-model-name")
    parser.add_argument("--context-length", type=int, default=262144)
    parser.add_argument("--enable-cache-report", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    args.served_model_name = args.served_model_name or args.model_path
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import uvicorn

    uvicorn.run(build_app(args), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
