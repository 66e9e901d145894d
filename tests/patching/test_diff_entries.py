"""Diff parsing, entry by entry: kinds by their headers, blob ids, quoting, and refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.diff import FileChange, FilePatch, Hunk, parse_diff, safe_repo_path

SHA1_A, SHA1_B = "a" * 40, "b" * 40


def test_index_lines_give_the_blob_ids_full_abbreviated_or_sha256() -> None:
    for old, new in [(SHA1_A, SHA1_B), ("1234567", "89abcde"), ("c" * 64, "d" * 64)]:
        text = f"diff --git a/f.py b/f.py\nindex {old}..{new} 100644\n--- a/f.py\n+++ b/f.py\n"
        [file] = parse_diff(text + "@@ -1 +1 @@\n-a\n+b\n", "d")
        assert file.blobs == (old, new)
    [plain] = parse_diff("--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n", "d")
    assert plain.blobs is None


def test_a_real_git_diff_is_parsed_whole(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "keep.py").write_text("a = 1\nb = 2\n")
    (repo / "gone.py").write_text("bye\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    (repo / "keep.py").write_text("a = 1\nb = 3\n")
    (repo / "gone.py").unlink()
    (repo / "new.py").write_text("hello\n")
    subprocess.run([*git, "add", "-A"], check=True)
    diff = subprocess.run(
        [*git, "diff", "--cached", "--full-index"], capture_output=True, text=True, check=True
    ).stdout
    blob = {
        name: subprocess.run(
            [*git, "rev-parse", f"{rev}:{name}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for rev, name in (("HEAD", "gone.py"), ("HEAD", "keep.py"))
    }
    files = parse_diff(diff, "PR #2")
    gone, keep, new = files
    assert gone == FilePatch(
        PurePosixPath("gone.py"),
        PurePosixPath("gone.py"),
        FileChange.DELETED,
        (Hunk("@@ -1,1 +0,0 @@", 1, ("bye\n",), ()),),
        "",
        (blob["gone.py"], "0" * 40),
    )
    assert (keep.kind, keep.blobs and keep.blobs[0]) == (FileChange.MODIFIED, blob["keep.py"])
    assert keep.hunks == (
        Hunk("@@ -1,2 +1,2 @@", 1, ("a = 1\n", "b = 2\n"), ("a = 1\n", "b = 3\n")),
    )
    assert (new.path, new.old_path, new.kind) == (PurePosixPath("new.py"), None, FileChange.ADDED)
    assert new.hunks == (Hunk("@@ -0,0 +1,1 @@", 0, (), ("hello\n",)),)


def test_new_and_deleted_file_modes_decide_the_kind() -> None:
    """Empty files added or deleted have no hunks: only their mode lines tell."""
    added = "diff --git a/e.py b/e.py\nnew file mode 100644\nindex 0000000..e69de29\n"
    [file] = parse_diff(added, "d")
    assert file == FilePatch(
        PurePosixPath("e.py"), None, FileChange.ADDED, (), "", ("0000000", "e69de29")
    )
    deleted = "diff --git a/e.py b/e.py\ndeleted file mode 100644\nindex e69de29..0000000\n"
    [file] = parse_diff(deleted, "d")
    assert (file.kind, file.old_path, file.hunks) == (FileChange.DELETED, PurePosixPath("e.py"), ())
    [plain] = parse_diff("--- a/e.py\n+++ b/e.py\n@@ -0,0 +1 @@\n+x\n", "d")
    assert plain.kind is FileChange.MODIFIED  # filling an empty file is `-0,0` too


def test_a_submodule_change_is_marked_unsupported() -> None:
    entry = (
        "diff --git a/third_party/lib b/third_party/lib\nindex 1234567..89abcde 160000\n"
        "--- a/third_party/lib\n+++ b/third_party/lib\n@@ -1 +1 @@\n"
        f"-Subproject commit {SHA1_A}\n+Subproject commit {SHA1_B}\n"
    )
    [file] = parse_diff(entry, "d")
    assert file.unsupported == "a submodule change"
    [text] = parse_diff("--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n", "d")
    assert text.unsupported == ""


def test_a_mode_change_with_hunks_is_a_text_change() -> None:
    entry = (
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n--- a/run.sh\n"
        "+++ b/run.sh\n@@ -1 +1 @@\n-a\n+b\n"
    )
    [file] = parse_diff(entry, "d")
    assert (file.kind, file.unsupported) == (FileChange.MODIFIED, "")


def test_refusals_name_the_diff_and_what_is_wrong() -> None:
    cases = {
        "": "d: the diff is empty: nothing to port",
        "not a diff at all\n": "d: no file changes found in the diff",
        "diff --git a/f.py b/f.py\nindex 1234567..89abcde 100644\n--- a/f.py\n+++ b/f.py\n": (
            "d: f.py: a file entry without any hunk"
        ),
        "--- a/x\n+++ b/x\n@@ -1,x +1 @@\n-a\n+b\n": "d: garbled hunk header '@@ -1,x +1 @@'",
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n": (
            "d: the hunk '@@ -1 +1 @@' holds more lines than its header counts"
        ),
    }
    for text, message in cases.items():
        with pytest.raises(UnsafeInputError) as err:
            parse_diff(text, "d")
        assert str(err.value) == message


def test_counts_default_to_one_and_the_next_file_header_ends_a_hunk() -> None:
    text = "--- a/x\n+++ b/x\n@@ -2 +2 @@\n-a\n+b\n--- a/y\n+++ b/y\n@@ -1,2 +1 @@\n-gone\n keep\n"
    x, y = parse_diff(text, "d")
    assert x.hunks == (Hunk("@@ -2,1 +2,1 @@", 2, ("a\n",), ("b\n",)),)
    assert y.hunks == (Hunk("@@ -1,2 +1,1 @@", 1, ("gone\n", "keep\n"), ("keep\n",)),)


def test_a_no_newline_marker_inside_the_counts_is_skipped() -> None:
    text = (
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n"
        "\\ No newline at end of file\n"
    )
    [file] = parse_diff(text, "d")
    assert file.hunks[0].old == ("a",) and file.hunks[0].new == ("b",)


def test_a_context_line_past_the_counts_is_a_lie() -> None:
    with pytest.raises(UnsafeInputError, match="holds more lines than its header counts"):
        parse_diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n more\n", "d")
    with pytest.raises(UnsafeInputError, match="holds more lines than its header counts"):
        parse_diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- x\n", "d")


def test_only_a_diff_whose_every_header_line_ends_in_crlf_is_converted() -> None:
    lf_headers = "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\r\n-old\r\n+new\r\n"
    [file] = parse_diff(lf_headers, "d")  # a diff of a CRLF file: kept as it is
    assert file.hunks[0].old == ("a\r\n", "old\r\n")
    mixed = lf_headers.replace("--- a/f.py\n", "--- a/f.py\r\n")
    with pytest.raises(UnsafeInputError, match=r"refusing unsafe path 'a/f\.py\\r'"):
        parse_diff(mixed, "d")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('"a/tab\\there.py"', None),  # a tab: refused once unquoted
        ('"a/q\\"uote.py"', 'q"uote.py'),
        ('"a/back\\\\slash.py"', None),
        ('"a/caf\\303\\251.py"', "café.py"),
        ('"a/plain.py"', "plain.py"),
        ('"a/bad\\377.py"', None),  # not UTF-8: left quoted, refused for its backslash
        ('"a/x.py', '"a/x.py'),  # an opening quote alone: not quoting
    ],
)
def test_git_quoted_paths_are_unquoted_before_the_safety_check(raw: str, path: str | None) -> None:
    if path is None:
        with pytest.raises(UnsafeInputError, match="refusing unsafe path"):
            safe_repo_path(raw, "d")
    else:
        assert str(safe_repo_path(raw, "d")) == path


def test_a_newline_in_a_quoted_path_is_refused() -> None:
    with pytest.raises(UnsafeInputError):
        safe_repo_path('"a/x\\ny.py"', "d")
    assert str(safe_repo_path("a/b/c.py", "d")) == "b/c.py"
    assert str(safe_repo_path("b/a/c.py", "d")) == "a/c.py"
    assert str(safe_repo_path("ab/c.py", "d")) == "ab/c.py"


@pytest.mark.parametrize(
    ("old", "new", "core"),
    [
        ("abc", "aBc", (1, 1)),
        ("cab", "dab", (0, 2)),
        ("xa", "ya", (0, 1)),
        ("axyb", "ab", (1, 1)),
        ("abb", "ab", (2, 0)),  # the shared lines are counted once, from the front
        ("ab", "abc", (2, 0)),
        ("pqrs", "pQRs", (1, 1)),
        ("", "a", (0, 0)),
    ],
)
def test_a_hunks_core_is_what_its_sides_do_not_share(
    old: str, new: str, core: tuple[int, int]
) -> None:
    """(leading, trailing) context lines: the three-way classification looks past them."""
    hunk = Hunk("@@ -1 +1 @@", 1, tuple(f"{c}\n" for c in old), tuple(f"{c}\n" for c in new))
    assert hunk.core() == core
