"""The no-thinking chat template is itself a patch: derived from the model's own."""

from __future__ import annotations

import json
from pathlib import Path

from patchkeeper.config.models import ChatTemplateFromModel, Service
from patchkeeper.errors import ConfigError

CONTAINER_PATH = "/patchkeeper/chat_template.jinja"

# Qwen3-shaped: it refuses a system turn anywhere but first, as Qwen3's own does;
# the adapter tier renders with it when an overlay carries no template.
QWEN_LIKE_TEMPLATE = """\
{%- for message in messages %}
{%- if message.role == "system" and not loop.first %}
{{- raise_exception("System message must be at the beginning.") }}
{%- endif %}
{{- "<|im_start|>" + message.role + "\\n" + message.content + "<|im_end|>\\n" }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- "<|im_start|>assistant\\n" }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- "<think>\\n\\n</think>\\n\\n" }}
{%- endif %}
{%- endif %}
"""


def _read(path: Path, what: str) -> str:
    """A template file as text: UTF-8, as Jinja and the server read it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: {what} is not UTF-8 text (byte {err.start}: {err.reason})"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror or err}") from None


def _named(entries: list[object], config: Path) -> dict[str, str]:
    """A list of named templates (as transformers reads it): each a name and a template."""
    named = {}
    for index, entry in enumerate(entries):
        where = f"{config}: chat_template[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with 'name' and 'template'")
        for key in ("name", "template"):
            if not isinstance(entry.get(key), str):
                found = type(entry.get(key)).__name__ if key in entry else "nothing"
                raise ConfigError(f"{where}.{key}: expected a string, found {found}")
        named[entry["name"]] = entry["template"]
    return named


def _model_template(model_dir: Path) -> str:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return _read(jinja, "the model's chat template")
    config = model_dir / "tokenizer_config.json"
    try:
        template = json.loads(_read(config, "the tokenizer config")).get("chat_template")
    except ValueError as err:
        raise ConfigError(f"{config}: cannot read the model's chat template: {err}") from None
    except AttributeError:  # valid JSON, but not an object
        raise ConfigError(f"{config}: not a JSON object") from None
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = _named(template, config).get("default")
    if not isinstance(template, str):
        raise ConfigError(f"{config}: no chat_template (and no chat_template.jinja beside it)")
    return template


def derive(spec: ChatTemplateFromModel, model_dir: Path) -> str:
    """Prepend `{%- set name = value %}` overrides to the model's template."""
    header = "".join(
        f"{{%- set {name} = {json.dumps(value)} %}}\n" for name, value in sorted(spec.set.items())
    )
    return header + _model_template(model_dir)


def render(service: Service, recipe_path: Path) -> str | None:
    """The template text the overlay should carry, or None when the recipe has none."""
    spec = service.chat_template
    if spec is None:
        return None
    if isinstance(spec, Path):
        return _read(spec, "service.chat_template")
    if service.model.host_path is None:
        raise ConfigError(
            f"{recipe_path}: service.chat_template: 'from: model' needs service.model.host_path"
        )
    return derive(spec, service.model.host_path)
