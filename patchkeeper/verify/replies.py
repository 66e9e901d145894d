"""The shapes of what a server under test replies, checked before any check reads them.

A server under test is untrusted: a reply of the wrong shape (a list where an object
belongs, a string for a count, JSON nested 100k deep) is a failed check naming the
endpoint and the field, never an exception. JSON is parsed by pydantic, whose parser
bounds nesting depth. Fields the checks do not read are allowed and ignored.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError

Reply = TypeVar("Reply", bound=BaseModel)


class BadReply(Exception):
    """A reply that is not the shape its endpoint promises."""


class Shape(BaseModel):
    """The fields a check reads, typed; any others allowed and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Usage(Shape):
    input_tokens: StrictInt | None = None
    output_tokens: StrictInt | None = None
    cache_read_input_tokens: StrictInt | None = None
    cache_creation_input_tokens: StrictInt | None = None

    def prompt_tokens(self) -> int:
        """Everything the prompt cost, whether or not some of it came from the cache."""
        parts = (self.input_tokens, self.cache_read_input_tokens, self.cache_creation_input_tokens)
        return sum(part or 0 for part in parts)


class Block(Shape):
    type: StrictStr


class Message(Shape):
    """POST /v1/messages, not streamed."""

    type: StrictStr | None = None
    role: StrictStr | None = None
    content: list[Block]
    stop_reason: StrictStr | None = None
    usage: Usage = Usage()


class ModelEntry(Shape):
    id: StrictStr


class Models(Shape):
    """GET /v1/models."""

    data: list[ModelEntry] = []


class TokenCount(Shape):
    """POST /v1/messages/count_tokens."""

    input_tokens: StrictInt


class ServerArgs(Shape):
    speculative_algorithm: StrictStr | None = None


class InternalState(Shape):
    avg_spec_accept_length: StrictFloat | None = None  # an integer is a float too


class ServerInfo(Shape):
    """SGLang's GET /get_server_info."""

    speculative_algorithm: StrictStr | None = None
    server_args: ServerArgs | None = None
    internal_states: list[InternalState] = []


OBJECT = "Input should be an object"  # as JSON says it, whether parsed or validated


def problem(err: ValidationError, limit: int = 2) -> str:
    """A validation error as `field: what is wrong (got value)`; containers' values are
    left out (they may be large, or deep)."""
    parts = []
    for found in err.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in found["loc"])
        value = found.get("input")
        got = f" (got {value!r:.60})" if isinstance(value, (str, int, float, type(None))) else ""
        said = OBJECT if found["type"] in ("model_type", "dict_type") else found["msg"]
        parts.append(f"{where}: {said}{got}" if where else f"{said}{got}")
    return "; ".join(parts)


def parse(shape: type[Reply], body: bytes, what: str) -> Reply:
    """`body` as `shape`, or BadReply naming `what` (the endpoint) and the field."""
    try:
        return shape.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "json_invalid":
            head = body[:200].decode("utf-8", "replace")
            detail = str(first["msg"]).removeprefix("Invalid JSON: ")
            reason = f"response is not JSON ({detail}): {head!r}"
        elif first["type"] == "model_type" and not first["loc"]:
            reason = "response is not a JSON object"
        else:
            reason = f"response of the wrong shape: {problem(err)}"
        raise BadReply(f"{what}: {reason}") from None
