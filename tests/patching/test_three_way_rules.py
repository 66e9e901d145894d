"""Three-way porting rules, result by result, against real PRs and git merge-file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from patchkeeper.demo.history import Edit
from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.hunks import HunkResult, HunkStatus
from patchkeeper.patching.resolutions import has_markers
from tests.patching.conftest import PrHistory, merge_file

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]
LINES = "".join(f"line {i}\n" for i in range(30))
GROW = Edit("mod.py", "line 3\n", "line 3\nadded a\nadded b\n")  # +2 lines
SHRINK = Edit("mod.py", "line 12\nline 13\nline 14\n", "line 13\n")  # -2 lines


def three_hunks(make_upstream: MakeUpstream) -> PrHistory:
    up = make_upstream({"mod.py": LINES.encode()})
    last = Edit("mod.py", "line 25\n", "line twenty-five\n")
    up.history.squash_pr(1, "Three hunks", [GROW, SHRINK, last])
    return up


def test_on_the_base_every_hunk_applies_at_its_base_line(make_upstream: MakeUpstream) -> None:
    up = three_hunks(make_upstream)
    parsed = up.change(1)
    hunks = parsed.files[0].hunks
    result = up.port([1], {"mod.py": LINES.encode()})
    [outcome] = result.outcomes
    want = [HunkResult(h, HunkStatus.APPLIED, h.at + 1) for h in hunks]
    assert list(outcome.files[0].hunks) == want
    assert [r.line for r in want] == [2, 10, 23]  # three lines of context before each change


def test_on_the_result_every_hunk_is_present_where_the_result_has_it(
    make_upstream: MakeUpstream,
) -> None:
    up = three_hunks(make_upstream)
    theirs = up.file_at("HEAD", "mod.py")
    hunks = up.change(1).files[0].hunks
    [outcome] = up.port([1], {"mod.py": theirs}).outcomes
    assert list(outcome.files[0].hunks) == [
        HunkResult(hunks[0], HunkStatus.PRESENT, 2),
        HunkResult(hunks[1], HunkStatus.PRESENT, 12),  # after the first hunk's two lines
        HunkResult(hunks[2], HunkStatus.PRESENT, 23),  # +2 -2: back in place
    ]
    lines = theirs.decode().splitlines()
    assert lines[11 + 3] == "line 13" and lines[22 + 3] == "line twenty-five"


def test_conflict_markers_are_whole_lines() -> None:
    assert has_markers(b"a\n<<<<<<< image\nb\n")
    assert has_markers(b"a\n||||||| base\n")
    assert has_markers(b">>>>>>> theirs")
    assert has_markers(b"a\r\n<<<<<<<\r\nb\r\n")  # unlabelled, in a CRLF file
    assert not has_markers(b"a\n=======b\n")
    assert not has_markers(b"a = '<<<<<<<'\n")
    assert not has_markers(b"<<<<<<<< eight\n")


def test_a_separator_line_alone_is_a_heading_underline_not_a_marker() -> None:
    assert not has_markers(b"Title\n=======\n\ntext\n")
    assert not has_markers(b"Title\r\n=======\r\n")
    assert has_markers(b"<<<<<<< image\na\n=======\nb\n>>>>>>> ps/PR #1\n")


def test_a_conflict_at_the_end_of_the_file_says_so(make_upstream: MakeUpstream) -> None:
    body = "".join(f"v{i} = {i}\n" for i in range(6))
    up = make_upstream({"tail.py": body.encode()})
    up.history.squash_pr(1, "Append", [Edit("tail.py", "v5 = 5\n", "v5 = 5\nmore = 1\n")])
    appended = up.port([1], {"tail.py": (body + "mine = 2\n").encode()}).outcomes[0]
    [hunk] = appended.files[0].hunks
    assert (hunk.status, hunk.line, hunk.reason) == (
        HunkStatus.CONFLICT,
        7,
        "the image changed lines 7-7 ('mine = 2') where the PR changes base lines 7-6 "
        "(end of file)",
    )
    cut = body.replace("v4 = 4\nv5 = 5\n", "")
    truncated = up.port([1], {"tail.py": cut.encode()}).outcomes[0]
    [hunk] = truncated.files[0].hunks
    assert hunk.reason == (
        "the image changed lines 5-4 (end of file) where the PR changes base lines 7-6 "
        "(end of file)"
    )


def test_a_file_git_will_not_merge_is_refused_naming_it(make_upstream: MakeUpstream) -> None:
    """A NUL byte is valid UTF-8, but git merge-file takes the file for binary and fails."""
    up = make_upstream({"mod.py": LINES.encode()})
    up.history.squash_pr(1, "One hunk", [SHRINK])
    ours = LINES.replace("line 1\n", "line \x00\n").encode()
    with pytest.raises(UnsafeInputError) as err:
        up.port([1], {"mod.py": ours})
    assert str(err.value).startswith("image /src/mod.py: git could not merge the file")


def test_the_same_change_within_a_larger_image_edit_is_a_conflict(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    """The image made the PR's change and edited the next line too: git merge-file refuses
    it, and the reason names the image's whole region against the PR's line."""
    up = make_upstream({"mod.py": LINES.encode()})
    up.history.squash_pr(1, "One line", [Edit("mod.py", "line 10\n", "line ten\n")])
    ours = LINES.replace("line 10\nline 11\n", "line ten\nline eleven\n").encode()
    result = up.port([1], {"mod.py": ours})
    [outcome] = result.outcomes
    [hunk] = up.change(1).files[0].hunks
    reason = (
        "the image changed lines 11-12 ('line ten') where the PR changes base lines 11-11 "
        "('line 10')"
    )
    assert outcome.files[0].hunks == (HunkResult(hunk, HunkStatus.CONFLICT, 11, reason),)
    base, theirs = up.file_at("HEAD~1", "mod.py"), up.file_at("HEAD", "mod.py")
    assert merge_file(ours, base, theirs, tmp_path)[1] == 1
    assert result.changed_files() == {}
