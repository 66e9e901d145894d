"""A bound on what a YAML file expands to, checked before anyone expands it.

Aliases let a few lines name billions of nodes (the "billion laughs"); Compose
expands them in memory and never returns. The events are walked once, each anchor's
expanded size remembered, so the bound is checked without building anything.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

from patchkeeper.errors import ConfigError

MAX_NODES = 100_000


def check_expansion(path: Path, limit: int = MAX_NODES) -> None:
    """A ConfigError naming `path` when its aliases expand beyond `limit` nodes."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = [(None, 0)]
    try:
        for event in YAML().parse(text):
            if isinstance(event, CollectionStartEvent):
                stack.append((event.anchor, 1))
                continue
            if isinstance(event, AliasEvent):
                count = sizes.get(str(event.anchor), 1)
            elif isinstance(event, ScalarEvent):
                count = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, CollectionEndEvent):
                anchor, count = stack.pop()
                if anchor:
                    sizes[anchor] = count
            else:
                continue
            anchor, total = stack[-1]
            stack[-1] = (anchor, total + count)
            if total + count > limit:
                raise ConfigError(
                    f"{path}: its YAML aliases expand to over {limit} nodes "
                    "(an alias bomb?); refusing to read it"
                )
    except YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
