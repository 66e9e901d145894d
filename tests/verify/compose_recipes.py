"""A recipe whose service runs SGLang 0.5.13's real adapter in the Python nightly image
(in place of `sglang.launch_server`), for the compose boot tier and `up`'s smoke tests."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from patchkeeper.demo.scenario import SERVING, TAG_PATTERN, adapter_files
from patchkeeper.demo.setup import Demo
from patchkeeper.verify.runtime import SERVER, free_port
from tests.sglang_image import NIGHTLY_REPOSITORY

# SGLang 0.5.13's adapter never reports cached tokens; a local patch maps them, as
# later releases do. Its witness, prefix_cache, needs --enable-cache-report.
CACHE_REPORT = (
    "                output_tokens=response.usage.completion_tokens if response.usage else 0,\n",
    "                cache_read_input_tokens=getattr(\n"
    '                    getattr(response.usage, "prompt_tokens_details", None), "cached_tokens", None\n'
    "                ),\n",
)
RECIPE = """\
image: {image}
tags: '{tags}'
patchsets: [patchset.yaml]
service:
  name: sglang
  container_name: sglang-adapter-demo
  port: {port}
  model: {{path: /models/tiny, host_path: {model}}}
  command: {command}
  args: {args}
  volumes: ['{server}:/opt/patchkeeper/adapter_server.py:ro']
  chat_template: {{from: model, set: {{enable_thinking: false}}}}
  healthcheck:
    test: [CMD, python3, -c, "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/health')"]
    interval: 2s
  gpus: null
"""
ADAPTER = ["python3", "/opt/patchkeeper/adapter_server.py"]
ARGS = ["--served-model-name", "demo-model", "--enable-cache-report"]


def compose_recipe(
    demo: Demo, workdir: Path, command: list[str], args: list[str] = ARGS
) -> tuple[Path, int]:
    """The demo patchset plus the cache-report diff, served by `command` on a free port."""
    workdir.mkdir()
    vanilla = adapter_files()[SERVING].decode()
    context, added = CACHE_REPORT
    patched = vanilla.replace(context, context + added)
    diff = "".join(
        difflib.unified_diff(
            vanilla.splitlines(keepends=True),
            patched.splitlines(keepends=True),
            f"a/{SERVING}",
            f"b/{SERVING}",
        )
    )
    (workdir / "cache-report.diff").write_text(diff)
    patchset = (demo.recipe.parent / "sglang-demo.yaml").read_text() + (
        "  - diff: cache-report.diff\n"
        "    why: report cached prompt tokens as cache_read_input_tokens\n"
        "    witness: prefix_cache\n"
    )
    (workdir / "patchset.yaml").write_text(patchset)
    port = free_port()
    recipe = workdir / "recipe.yaml"
    recipe.write_text(
        RECIPE.format(
            image=NIGHTLY_REPOSITORY,
            tags=TAG_PATTERN,
            port=port,
            model=demo.recipe.parent / "model",
            command=json.dumps(command),
            args=json.dumps(args),
            server=SERVER,
        )
    )
    return recipe, port
