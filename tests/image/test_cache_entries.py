"""The file cache is state on disk, so untrusted: an entry of any shape is a miss (read again
from the source), never a crash and never a wrong answer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchkeeper.errors import OutputError
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.model import ImageFile, ImageRef
from patchkeeper.image.registry import RegistrySource
from tests.names import unique
from tests.oci import Image, layer, push, tree

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
F = PurePosixPath("/srv/app/f.py")
GIT = PurePosixPath("/srv/app/.git")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
SHAPED = st.fixed_dictionaries(
    {}, optional={"absent": JSON, "sha256": JSON, "mode": JSON, "resolved": JSON, "path": JSON}
)
_NAME = unique("pk-test/cache-entries")
_pushed: list[bool] = []


def _ref() -> ImageRef:
    if not _pushed:
        files = {str(F): "print('f')\n", f"{GIT}/HEAD": "ref: refs/heads/main\n"}
        push(REGISTRY, _NAME, "1", Image([layer(tree(files))]))
        _pushed.append(True)
    return ImageRef(f"{REGISTRY}/{_NAME}", "1")


def _read(root: Path) -> dict[PurePosixPath, ImageFile | None]:
    source = CachedSource(RegistrySource(), root)
    return source.read(source.resolve(_ref()), [F, PurePosixPath("/absent")], [GIT])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entry=st.one_of(SHAPED, JSON), listing=JSON)
def test_cache_entries_of_any_shape_are_read_again(
    tmp_path: Path, entry: object, listing: object
) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))  # each example its own cache
    truth = _read(root)
    assert truth[F] is not None and truth[F].content == b"print('f')\n"
    for cached in root.rglob("*.json"):
        cached.write_text(json.dumps(entry))
    for cached in root.rglob("*.dir"):
        cached.write_text(json.dumps(listing))
    again = _read(root)
    assert {p: f and (f.content, f.resolved) for p, f in again.items()} == {
        p: f and (f.content, f.resolved) for p, f in truth.items()
    } or _forged_but_well_formed(entry, listing)


def _forged_but_well_formed(entry: object, listing: object) -> bool:
    """An `absent` record or an empty git dir listing is what the cache itself writes: it
    is believed (the cache lives under the user's own directory; its shape is checked, not
    its honesty)."""
    return (isinstance(entry, dict) and entry.get("absent") is True) or listing == []


def test_a_file_in_the_caches_place_is_bad_input_naming_it(tmp_path: Path) -> None:
    (tmp_path / "files").write_text("")
    with pytest.raises(
        OutputError, match=r"image file cache directory .*files/\w+: not a dir"
    ) as err:
        _read(tmp_path / "files")
    assert err.value.exit_code == 2
