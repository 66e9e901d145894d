"""The Compose Specification's schema, for the service keys a recipe passes through.

Vendored (see schema/README.md) rather than asked of a Compose binary: a recipe is
validated offline, before any engine or Compose is there.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

from jsonschema import Draft7Validator


@functools.cache
def _validator() -> Draft7Validator:
    text = files("patchkeeper.config").joinpath("schema/compose-spec.json").read_text()
    schema = json.loads(text)
    service = schema["definitions"]["service"]
    return Draft7Validator({**service, "definitions": schema["definitions"]})


def service_errors(keys: dict[str, Any]) -> list[str]:
    """What is wrong with `keys` as (part of) a compose service, one message each."""
    found = []
    for error in sorted(_validator().iter_errors(keys), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties" and not where:
            unknown = sorted(set(keys) - set(error.schema.get("properties", {})))
            found += [f"{k!r}: neither a patchkeeper nor a compose service key" for k in unknown]
            continue
        found.append(f"{where + ': ' if where else ''}{error.message} (compose-spec)")
    return found
