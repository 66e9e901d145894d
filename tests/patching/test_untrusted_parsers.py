"""Property-based tests of the parsers and writers of untrusted data in porting: diffs, the
conflicts index, resolution records. Any input gives a result or a clear PatchkeeperError,
never another exception; what we write parses back, and nothing parsed names a path
outside its place."""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patchkeeper.config.models import NAME_PATTERN, Patch
from patchkeeper.errors import ConfigError, PatchkeeperError
from patchkeeper.patching.conflicts import INDEX, ConflictsIndex, read_index, write_conflicts
from patchkeeper.patching.diff import FileChange, parse_diff
from patchkeeper.patching.hunks import replay
from patchkeeper.patching.merge import Merged
from patchkeeper.patching.port import FileAction, FileOutcome, PatchOutcome, PatchState
from patchkeeper.patching.resolutions import Resolution, has_markers, load, record, store
from patchkeeper.upstream.model import PrState, UpstreamChange

EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Lines that diffs are made of, so that random input reaches past the first check.
_DIFF_LINE = st.one_of(
    st.sampled_from(
        [
            "diff --git a/m.py b/m.py\n",
            "--- a/m.py\n",
            "+++ b/m.py\n",
            "--- /dev/null\n",
            "+++ /dev/null\n",
            "--- a/../etc/passwd\n",
            '+++ "b/\\303\\251.py"\n',
            "new file mode 100644\n",
            "deleted file mode 100644\n",
            "new mode 100755\n",
            "rename from a.py\n",
            "rename to b.py\n",
            "similarity index 90%\n",
            "index 0123456..89abcde 100644\n",
            "Binary files a/x and b/x differ\n",
            "\\ No newline at end of file\n",
            "@@ -1 +1 @@\n",
            "@@ -0,0 +1,2 @@\n",
            "@@ -1,3 +1,3 @@ def f():\n",
            "@@ garbled\n",
            "-- \n",
            "\n",
            "\r\n",
        ]
    ),
    st.builds(
        "@@ -{} +{} @@\n".format,
        st.from_regex(r"\A[0-9]{1,4}(,[0-9]{1,4})?\Z"),
        st.from_regex(r"\A[0-9]{1,4}(,[0-9]{1,4})?\Z"),
    ),
    st.builds(lambda kind, text: f"{kind}{text}\n", st.sampled_from(" +-"), st.text(max_size=12)),
)


@EXAMPLES
@given(st.one_of(st.text(max_size=400), st.lists(_DIFF_LINE, max_size=30).map("".join)))
@example("--- /dev/null\n+++ /dev/null")  # once an AssertionError: exit 70
def test_any_diff_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        files = parse_diff(text, "ps/PR #1")
    except PatchkeeperError:
        return
    for file in files:
        for path in (file.path, file.old_path):
            assert path is None or (not path.is_absolute() and ".." not in path.parts)


_LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=8)


@EXAMPLES
@given(st.lists(_LINE, max_size=25), st.lists(_LINE, max_size=25), st.integers(0, 3))
def test_a_unified_diff_parses_back_to_the_change_it_describes(
    old: list[str], new: list[str], context: int
) -> None:
    before, after = [f"{line}\n" for line in old], [f"{line}\n" for line in new]
    lines = list(difflib.unified_diff(before, after, "a/m.py", "b/m.py", n=context))
    if not lines:
        return
    files = parse_diff("".join(lines), "ps/diff local")
    [file] = files
    assert replay(before, file.hunks) == after


def _json() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=20,
    )


VALID_ENTRY = {
    "patch": "ps/pr-1",
    "patchset": "ps",
    "patch_key": "pr-1",
    "label": "PR #1",
    "path": "/src/m.py",
    "file": "ps/pr-1/src/m.py",
    "ours": ".ours/ps/pr-1/src/m.py",
    "ours_sha256": "a" * 64,
    "marked_sha256": "b" * 64,
    "diff_sha256": "c" * 64,
    "hunks": [{"header": "@@ -1 +1 @@", "line": 1, "reason": "r"}],
}


def _stays_inside(index: ConflictsIndex, directory: Path) -> None:
    for entry in index.files:
        for name in (entry.file, entry.ours):
            assert (directory / name).resolve().is_relative_to(directory.resolve())
        assert "/" not in entry.patch_key and entry.patch_key not in ("", ".", "..")
        assert "/" not in entry.patchset and not entry.patchset.startswith(".")
        assert ".." not in PurePosixPath(entry.path).parts and entry.path.startswith("/")


def _read(directory: Path, data: bytes) -> None:
    (directory / INDEX).write_bytes(data)
    try:
        index = read_index(directory)
    except ConfigError as err:
        assert str(err).startswith(f"{directory / INDEX}: ")
        return
    _stays_inside(index, directory)


@EXAMPLES
@given(st.one_of(st.binary(max_size=200), _json().map(lambda v: json.dumps(v).encode())))
def test_any_index_file_parses_or_is_refused_naming_it(tmp_path: Path, data: bytes) -> None:
    _read(tmp_path, data)


@EXAMPLES
@given(st.sampled_from(sorted(VALID_ENTRY)), _json())
@example("file", "\0")  # once a ValueError from os.path: exit 70
@example("path", "/src/\0")
def test_an_index_with_any_one_field_replaced_parses_or_is_refused(
    tmp_path: Path, field: str, value: Any
) -> None:
    entry = {**VALID_ENTRY, field: value}
    _read(tmp_path, json.dumps({"format": 1, "files": [entry]}).encode())


_SEGMENT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..", ".git") and len(s.encode()) < 200)
_NAME = st.from_regex(NAME_PATTERN.replace("*$", "{0,15}$"), fullmatch=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    _NAME,
    _NAME,
    st.lists(_SEGMENT, min_size=1, max_size=3),
    st.text(max_size=40),
    st.text(max_size=40),
)
def test_what_write_conflicts_writes_reads_back(
    patchset: str, key: str, segments: list[str], ours: str, theirs: str
) -> None:
    path = PurePosixPath("/src", *segments)
    patch = Patch(pr=1, id=key, why="t")
    change = UpstreamChange(patchset, patch, PrState.OPEN, "diff\n")
    merged = Merged(None, (), ours, "", theirs, (f"image {path}", "base", "ps/PR #1"))
    conflict = FileOutcome(
        path, FileChange.MODIFIED, FileAction.CONFLICT, ours=ours.encode(), three_way=merged
    )
    outcome = PatchOutcome(change, PatchState.CONFLICT, (conflict,))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "conflicts"
        written = write_conflicts([outcome], directory)
        index = read_index(directory)
        [entry] = index.files
        assert (entry.patchset, entry.patch_key, entry.path) == (patchset, key, str(path))
        assert directory / entry.file == written[(change.id, str(path))]
        assert (directory / entry.ours).read_bytes() == ours.encode()
        _stays_inside(index, directory)


@EXAMPLES
@given(
    st.lists(_SEGMENT, min_size=1, max_size=3),
    st.binary(max_size=100),
    st.binary(max_size=100),
    st.from_regex(r"\A[0-9a-f]{64}\Z"),
)
def test_a_recorded_resolution_loads_back_unless_it_holds_markers(
    segments: list[str], ours: bytes, resolved: bytes, diff_sha: str
) -> None:
    resolution = Resolution(PurePosixPath("/src", *segments), ours, diff_sha, resolved)
    with tempfile.TemporaryDirectory() as tmp:
        patchset = Path(tmp) / "ps.yaml"
        entry = record(patchset, "pr-1", resolution)
        assert entry.parent == store(patchset) / "pr-1"
        if has_markers(resolved):
            try:
                load(patchset, "pr-1")
            except ConfigError as err:
                assert "still holds conflict markers" in str(err)
            else:
                raise AssertionError("a resolution holding markers was loaded")
        else:
            assert load(patchset, "pr-1") == (resolution,)


@EXAMPLES
@given(st.one_of(st.binary(max_size=200), _json().map(lambda v: json.dumps(v).encode())))
def test_any_resolution_record_loads_or_is_refused_naming_it(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        patchset = Path(tmp) / "ps.yaml"
        entry = record(patchset, "pr-1", Resolution(PurePosixPath("/src/m.py"), b"", "d" * 64, b""))
        (entry / "resolution.json").write_bytes(data)
        try:
            loaded = load(patchset, "pr-1")
        except ConfigError as err:
            assert str(err).startswith(str(entry))
            return
        assert all(r.path.is_absolute() and ".." not in r.path.parts for r in loaded)


_HEX = st.text("0123456789abcdef", min_size=4, max_size=40) | st.text(
    "0123456789abcdef", min_size=64, max_size=64
)
_OBJECT_ID = _HEX | st.text("0123456789abcdefABx. ", max_size=70)
_WELL_FORMED = re.compile(r"([0-9a-f]{4,40}|[0-9a-f]{64})")


@EXAMPLES
@given(
    _OBJECT_ID,
    _OBJECT_ID,
    st.sampled_from(["", " 100644", " 100755", " 160000", " 10064", " 100644x", "x"]),
    st.sampled_from(["", " ", "\r", " \t"]),
)
def test_an_index_line_names_blobs_only_when_it_is_well_formed(
    old: str, new: str, mode: str, trailer: str
) -> None:
    """What a local diff's index line names is looked up upstream: never a garbled id."""
    line = f"index {old}..{new}{mode}{trailer}\n"
    text = f"diff --git a/f.py b/f.py\n{line}--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n"
    [file] = parse_diff(text, "ps/diff fix")
    well_formed = (
        _WELL_FORMED.fullmatch(old)
        and _WELL_FORMED.fullmatch(new)
        and re.fullmatch(r"( [0-7]{6})?", mode)
    )
    assert file.blobs == ((old, new) if well_formed else None)
    assert file.hunks[0].new == ("b\n",)
