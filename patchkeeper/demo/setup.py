"""Lay out the whole demo in a directory: upstream, image, model, patchset, recipe."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE as MODEL_TEMPLATE
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import (
    REPOSITORY,
    SOURCE_ROOT,
    TAG_PATTERN,
    DemoUpstream,
    build_upstream,
)
from patchkeeper.image.identity import REVISION_LABEL

PATCHSET = """\
# The fixes a local model needs before Claude Code can talk to it.
upstream:
  git: {url}
  branch: main
source_root: {root}
patches:
  - pr: 24294
    why: no text_delta on an open tool_use block ("Content block is not a text block")
    witness: tool_stream_blocks
  - pr: 26773
    why: role "system" inside messages is rejected with 400; hoist it (schema + template)
    witness: mid_conversation_system
  - pr: 28906
    why: pass mid-conversation system turns through where the template can render them
  - pr: 25876
    why: keep malformed tool arguments instead of dropping them
"""

RECIPE = """\
image: {repository}
tags: '{tags}'
patchsets: [sglang-demo.yaml]
service:
  name: sglang
  container_name: sglang-demo
  port: 30000
  model:
    path: /models/tiny
    host_path: {model}
  args: [--tp-size, "1", --reasoning-parser, qwen3, --tool-call-parser, qwen3_coder]
  environment: {{SGLANG_ENABLE_SPEC_V2: "1"}}
  chat_template: {{from: model, set: {{enable_thinking: false}}}}
  gpus: null
"""


@dataclass(frozen=True)
class Demo:
    upstream: DemoUpstream
    recipe: Path
    image: str


def lay_out(workdir: Path, client: Any, repository: str = REPOSITORY) -> Demo:
    """Build everything the demo needs under `workdir` (replacing an earlier demo)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    upstream = build_upstream(workdir)
    tree = upstream.history.source_tree(upstream.nightly_commit, workdir / "source")
    reference = f"{repository}:{upstream.tag}"
    build_image(
        client,
        reference,
        {str(SOURCE_ROOT): tree},
        labels={REVISION_LABEL: upstream.nightly_commit},
    )
    model = workdir / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": MODEL_TEMPLATE}))
    (workdir / "sglang-demo.yaml").write_text(PATCHSET.format(url=upstream.url, root=SOURCE_ROOT))
    recipe = workdir / "demo.yaml"
    recipe.write_text(RECIPE.format(repository=repository, tags=TAG_PATTERN, model=model))
    return Demo(upstream, recipe, reference)
