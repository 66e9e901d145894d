import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.diff import FileChange, parse_diff

MODIFY = """\
diff --git a/{p} b/{p}
--- a/{p}
+++ b/{p}
@@ -1,2 +1,2 @@
 keep
-old
+new
"""


def test_parses_modify_add_delete_rename() -> None:
    text = MODIFY.format(p="pkg/a.py") + (
        "diff --git a/pkg/n.py b/pkg/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/pkg/n.py\n"
        "@@ -0,0 +1 @@\n+hello\n"
        "diff --git a/pkg/d.py b/pkg/d.py\ndeleted file mode 100644\n--- a/pkg/d.py\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        "diff --git a/pkg/o.py b/pkg/r.py\nsimilarity index 100%\n"
        "rename from pkg/o.py\nrename to pkg/r.py\n"
    )
    files = parse_diff(text, "PR #1")
    assert [(str(f.path), f.kind) for f in files] == [
        ("pkg/a.py", FileChange.MODIFIED),
        ("pkg/n.py", FileChange.ADDED),
        ("pkg/d.py", FileChange.DELETED),
        ("pkg/r.py", FileChange.RENAMED),
    ]
    assert files[0].hunks[0].old == ("keep\n", "old\n")
    assert files[0].hunks[0].new == ("keep\n", "new\n")
    assert str(files[3].old_path) == "pkg/o.py"


def test_no_newline_marker_strips_the_newline() -> None:
    text = MODIFY.format(p="a.py") + "\\ No newline at end of file\n"
    [file] = parse_diff(text, "d")
    assert file.hunks[0].new[-1] == "new"


@pytest.mark.parametrize("path", ["../etc/passwd", "pkg/../../x", "/etc/passwd", ".git/config"])
def test_paths_that_escape_are_refused(path: str) -> None:
    text = f"--- {path}\n+++ {path}\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n"
    with pytest.raises(UnsafeInputError, match="unsafe path"):
        parse_diff(text, "PR #7")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (
            "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n"
            "@@ -0,0 +1 @@\n+/etc/shadow\n\\ No newline at end of file\n",
            "a symlink change",
        ),
        (
            "diff --git a/x.bin b/x.bin\nindex 1..2 100644\nBinary files a/x.bin and b/x.bin differ\n",
            "a binary change",
        ),
        ("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n", "a file-mode change"),
    ],
)
def test_entries_a_text_overlay_cannot_carry_are_marked(entry: str, why: str) -> None:
    [file] = parse_diff(entry, "PR #8")
    assert file.unsupported == why


def test_malformed_diff_is_refused() -> None:
    with pytest.raises(UnsafeInputError, match="PR #3"):
        parse_diff("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n", "PR #3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the diff is empty"),
        ("\n\n", "the diff is empty"),
        ("--- a/x\n+++ b/x\n@@ -1,x +1 @@\n-a\n+b\n", "garbled hunk header"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n c\n+d\n", "more lines than its header counts"),
    ],
)
def test_empty_garbled_and_lying_diffs_are_refused(text: str, message: str) -> None:
    with pytest.raises(UnsafeInputError, match=f"PR #5: .*{message}"):
        parse_diff(text, "PR #5")


def test_a_mail_signature_after_the_last_hunk_is_not_a_lie() -> None:
    [file] = parse_diff(MODIFY.format(p="a.py") + "-- \n2.43.0\n", "d")
    assert file.hunks[0].new == ("keep\n", "new\n")


def test_git_quoted_non_ascii_paths_are_unquoted() -> None:
    text = (
        MODIFY.format(p="x")
        .replace("a/x", '"a/caf\\303\\251.py"')
        .replace("b/x", '"b/caf\\303\\251.py"')
    )
    [file] = parse_diff(text, "d")
    assert str(file.path) == "café.py"


def test_a_diff_converted_to_crlf_wholesale_is_read_as_lf() -> None:
    [file] = parse_diff(MODIFY.format(p="a.py").replace("\n", "\r\n"), "d")
    assert str(file.path) == "a.py" and file.hunks[0].new == ("keep\n", "new\n")


def test_lines_split_on_newline_only() -> None:
    text = MODIFY.format(p="a.py").replace("old", "o\u2028ld").replace("new", "n\x0cew")
    [file] = parse_diff(text, "d")
    assert file.hunks[0].old == ("keep\n", "o\u2028ld\n")
    assert file.hunks[0].new == ("keep\n", "n\x0cew\n")


def test_a_blank_line_after_the_last_hunk_is_not_context() -> None:
    [file] = parse_diff(MODIFY.format(p="a.py") + "\n\n", "d")
    assert file.hunks[0].old == ("keep\n", "old\n")
