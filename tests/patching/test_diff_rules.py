"""Diff parsing rules: headers, no-newline markers, and the paths a diff may name."""

from __future__ import annotations

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.diff import parse_diff, safe_repo_path


def test_hunk_headers_and_sides_are_kept_exactly() -> None:
    text = "--- a/f.py\n+++ b/f.py\n@@ -3,3 +3,4 @@\n keep\n-old\n+new\n+more\n tail\n"
    [file] = parse_diff(text, "d")
    [hunk] = file.hunks
    assert hunk.header == "@@ -3,3 +3,4 @@"
    assert (hunk.old_start, hunk.old, hunk.new) == (
        3,
        ("keep\n", "old\n", "tail\n"),
        ("keep\n", "new\n", "more\n", "tail\n"),
    )


def test_a_no_newline_marker_applies_to_the_line_before_it_only() -> None:
    text = (
        "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\n-old\n\\ No newline at end of file\n"
        "+new\n\\ No newline at end of file\n"
    )
    [file] = parse_diff(text, "d")
    [hunk] = file.hunks
    assert hunk.old == ("a\n", "old") and hunk.new == ("a\n", "new")


def test_a_no_newline_marker_after_context_strips_both_sides() -> None:
    text = "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,3 @@\n+first\n a\n b\n\\ No newline at end of file\n"
    [file] = parse_diff(text, "d")
    assert file.hunks[0].old == ("a\n", "b") and file.hunks[0].new == ("first\n", "a\n", "b")


def test_several_hunks_in_one_file_are_kept_in_order() -> None:
    text = "--- a/f.py\n+++ b/f.py\n@@ -1,1 +1,1 @@\n-a\n+A\n@@ -10,1 +10,1 @@\n-b\n+B\n"
    [file] = parse_diff(text, "d")
    assert [(h.header, h.old, h.new) for h in file.hunks] == [
        ("@@ -1,1 +1,1 @@", ("a\n",), ("A\n",)),
        ("@@ -10,1 +10,1 @@", ("b\n",), ("B\n",)),
    ]


@pytest.mark.parametrize(
    "raw", ["a/x\ty", "a/x\x1by", "a/dir\\x.py", "", "a/", "b/.git/hooks/post-checkout"]
)
def test_unsafe_names_are_refused_naming_the_label_and_path(raw: str) -> None:
    with pytest.raises(UnsafeInputError) as err:
        safe_repo_path(raw, "PR #5")
    assert str(err.value) == f"PR #5: refusing unsafe path {raw!r} in diff"


@pytest.mark.parametrize(
    ("raw", "path"),
    [("a/pkg/x.py", "pkg/x.py"), ("b/with space.py", "with space.py"), ("plain.py", "plain.py")],
)
def test_safe_names_lose_only_their_a_or_b_prefix(raw: str, path: str) -> None:
    assert str(safe_repo_path(raw, "d")) == path


def test_an_unsafe_path_in_a_diff_is_named_with_the_diff_label() -> None:
    text = "--- a/ok.py\n+++ b/dir\\x.py\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(UnsafeInputError, match=r"^PR #6: refusing unsafe path 'b/dir\\\\x.py'"):
        parse_diff(text, "PR #6")
