"""The bound on what a YAML file's aliases expand to (user compose files are untrusted)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from patchkeeper.config.yaml_bounds import check_expansion
from patchkeeper.errors import ConfigError


def bomb(width: int, depth: int) -> tuple[str, int, int]:
    """A document whose last list names width**(depth+1) leaves through aliases; the text,
    its leaf count and its node count (collections, keys and the top mapping too)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    size = 1 + width
    nodes = 2 + size  # the top mapping, the key, the list
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
        size = 1 + width * size
        nodes += 1 + size
    return "\n".join(lines) + "\n", width ** (depth + 1), nodes


def checked(text: str, limit: int) -> bool:
    """Whether `text` passes the bound (False: refused, naming the file)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "compose.yaml"
        path.write_text(text)
        try:
            check_expansion(path, limit)
        except ConfigError as err:
            assert str(err).startswith(f"{path}: its YAML aliases expand to over {limit} nodes")
            return False
        return True


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 9), st.integers(0, 6), st.integers(1, 20_000))
def test_aliases_are_refused_beyond_the_bound_and_only_then(
    width: int, depth: int, limit: int
) -> None:
    text, leaves, nodes = bomb(width, depth)
    if leaves > limit:
        assert not checked(text, limit)
    if nodes <= limit:
        assert checked(text, limit)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(JSONISH)
def test_a_document_without_aliases_within_the_bound_passes(document: object) -> None:
    text = io.StringIO()
    YAML(typ="safe").dump({"x": document}, text)
    # ruamel's emitter writes some keys (":0" in a flow mapping) as YAML no parser takes
    # back; such a text is malformed, not a document, and has its own test below.
    try:
        YAML(typ="safe").load(text.getvalue())
    except YAMLError:
        assume(False)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text.getvalue())
        handle.flush()
        check_expansion(Path(handle.name))


def test_malformed_yaml_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services: [\n")
    with pytest.raises(ConfigError, match=f"{path}: malformed YAML"):
        check_expansion(path)
