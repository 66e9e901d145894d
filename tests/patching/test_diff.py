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


def test_symlink_changes_are_refused() -> None:
    text = (
        "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n"
        "@@ -0,0 +1 @@\n+/etc/shadow\n\\ No newline at end of file\n"
    )
    with pytest.raises(UnsafeInputError, match="PR #8: link: refusing a symlink"):
        parse_diff(text, "PR #8")


def test_binary_diffs_are_refused() -> None:
    text = (
        "diff --git a/x.bin b/x.bin\nindex 1..2 100644\nBinary files a/x.bin and b/x.bin differ\n"
    )
    with pytest.raises(UnsafeInputError, match="binary"):
        parse_diff(text, "PR #9")


def test_malformed_diff_is_refused() -> None:
    with pytest.raises(UnsafeInputError, match="PR #3"):
        parse_diff("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n", "PR #3")
