"""Edit patchset files in place, keeping their comments, order and layout (round-trip YAML)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from patchkeeper.config.load import load_patchset
from patchkeeper.errors import ConfigError
from patchkeeper.paths import atomic_write


def retire(path: Path, retirements: Sequence[tuple[str, str]]) -> None:
    """Move each patch whose key matches into `retired:` with its reason.

    Keys are patch keys as in locks (`pr-N`, a diff's stem, or an explicit id). The
    result is validated before it replaces the file, and the replacement is atomic.
    """
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped patchsets' style
    document = yaml.load(path.read_text(encoding="utf-8"))
    patches = document["patches"]
    keys = {key for key, _ in retirements}
    reasons = dict(retirements)
    patchset = load_patchset(path)
    by_key = {patch.key: index for index, patch in enumerate(patchset.patches)}
    missing = keys - set(by_key)
    if missing:
        raise ConfigError(f"{path}: no patches {sorted(missing)} to retire")
    retired = document.get("retired")
    if retired is None:
        retired = document["retired"] = CommentedSeq()
    for key in sorted(keys, key=lambda k: by_key[k], reverse=True):
        entry = patches.pop(by_key[key])
        moved = CommentedMap((k, entry[k]) for k in entry if k != "reason")  # witness, ...
        moved["reason"] = reasons[key]
        retired.insert(0, moved)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    load_patchset(path, buffer.getvalue())  # refuses a result that is no valid patchset
    atomic_write(path, buffer.getvalue().encode())
