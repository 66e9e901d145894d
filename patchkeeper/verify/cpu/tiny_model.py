"""Write a tiny, randomly initialised model that real SGLang can serve on CPU, offline.

Runs inside the boot-tier venv (it imports torch and transformers), never in
patchkeeper's own: `python tiny_model.py DEST [--no-mtp]` or `python -m ...tiny_model`.

* Tokenizer: byte-level BPE trained here with `tokenizers` on a small built-in corpus,
  wrapped as PreTrainedTokenizerFast, with a ChatML chat template that renders
  system/user/assistant/tool turns and tools, and (like Qwen3's) refuses a system turn
  anywhere but first.
* Model: with `mtp` (default) a `MiMoForCausalLM` (a Qwen2 body plus
  `num_nextn_predict_layers=1` and `model.mtp_layers.0.*` weights), which SGLang loads
  as its own NEXTN draft; without it a plain `Qwen2ForCausalLM`. Hidden size 64, two
  layers, random weights: the answers are noise, but every code path runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 128
VOCAB = 1024
MAX_POSITIONS = 32768
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]

# Qwen3-shaped ChatML. A system turn after the first message raises, as Qwen3's does.
CHAT_TEMPLATE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions.\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\nReturn each call as <tool_call>{"name": ..., "arguments": ...}</tool_call>\
<|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.content is string %}
{%- set content = message.content %}
{%- elif message.content is none or message.content is undefined %}
{%- set content = '' %}
{%- else %}
{%- set content = message.content | map(attribute='text') | select('string') | join('') %}
{%- endif %}
{%- if message.role == 'system' %}
{%- if not loop.first %}
{{- raise_exception('System message must be at the beginning.') }}
{%- endif %}
{%- elif message.role == 'user' %}
{{- '<|im_start|>user\\n' + content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\\n' + content }}
{%- for call in message.tool_calls or [] %}
{%- set fn = call.function if call.function is defined else call %}
{{- '\\n<tool_call>\\n{"name": "' + fn.name + '", "arguments": ' }}
{%- if fn.arguments is string %}{{- fn.arguments }}
{%- else %}{{- fn.arguments | tojson }}{%- endif %}
{{- '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\\n\\n</think>\\n\\n' }}
{%- endif %}
{%- endif %}
"""

CORPUS = [
    "Say hello in one short sentence.",
    "Hello! How can I help you today?",
    "What is two plus two? Four. Answer with a single digit.",
    "Reminder: answer with a single digit.",
    "Call get_weather for Paris, then get_time for Paris. Use both tools now.",
    "Get the current weather for a city. Get the current local time for a city.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}',
    "Rule 1: keep answers short and precise. Rule 2: keep answers short and precise.",
    "Name a colour. Red. Name a fruit. Apple. Count to 5: 1, 2, 3, 4, 5.",
    "Reply with the single word OK. OK.",
    "You are Claude Code, a command line assistant for software engineering tasks.",
    "def main():\n    print('hello world')\n    return 0\n",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "user assistant system tool function arguments content message text result",
]


def build_tokenizer(dest: Path) -> Any:
    from tokenizers import (  # type: ignore[import-not-found]
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found]

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(SPECIALS),
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(dest))
    return fast


def build_model(dest: Path, tokenizer: Any, *, mtp: bool) -> None:
    import torch  # type: ignore[import-not-found]
    from transformers import (
        Qwen2Config,
        Qwen2ForCausalLM,
    )
    from transformers.models.qwen2.modeling_qwen2 import (  # type: ignore[import-not-found]
        Qwen2DecoderLayer,
        Qwen2RMSNorm,
    )

    torch.manual_seed(0)
    vocab = len(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config).eval()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if mtp:
        config.architectures = ["MiMoForCausalLM"]
        config.num_nextn_predict_layers = 1
        layer = Qwen2DecoderLayer(config, layer_idx=0)
        prefix = "model.mtp_layers.0."
        for name, tensor in layer.state_dict().items():
            state[prefix + name] = tensor.detach().clone().contiguous()
        for norm in ("token_layernorm", "hidden_layernorm", "final_layernorm"):
            state[f"{prefix}{norm}.weight"] = Qwen2RMSNorm(HIDDEN).weight.detach().clone()
        proj = torch.nn.Linear(2 * HIDDEN, HIDDEN, bias=False)
        state[f"{prefix}input_proj.weight"] = proj.weight.detach().clone().contiguous()
    else:
        config.architectures = ["Qwen2ForCausalLM"]

    from safetensors.torch import save_file  # type: ignore[import-not-found]

    dest.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(dest))
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    generation = {"eos_token_id": eos, "pad_token_id": pad, "bos_token_id": pad}
    (dest / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def build_tiny_model(dest: Path, *, mtp: bool = True) -> Path:
    """Write the tokenizer, config and weights into `dest`; return `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(dest)
    build_model(dest, tokenizer, mtp=mtp)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--no-mtp", action="store_true", help="plain Qwen2, no NEXTN layer")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.dest, mtp=not args.no_mtp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
