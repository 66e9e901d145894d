from pathlib import PurePosixPath

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.patching.port import FileAction, PatchState, excluded, port
from tests.patching.changes import ROOT, change, modify


def test_two_changes_on_one_file_apply_in_order() -> None:
    vanilla = {ROOT / "f.py": b"ctx\nv1\n"}
    result = port(
        [change("one", modify("f.py", "v1", "v2")), change("two", modify("f.py", "v2", "v3"))],
        vanilla,
    )
    assert [o.state for o in result.outcomes] == [PatchState.APPLIED, PatchState.APPLIED]
    assert result.changed_files() == {ROOT / "f.py": b"ctx\nv3\n"}


def test_a_change_touching_two_files_ports_both() -> None:
    vanilla = {ROOT / "schema.py": b"ctx\nold\n", ROOT / "template.py": b"ctx\nold\n"}
    diff = modify("schema.py", "old", "new") + modify("template.py", "old", "new")
    result = port([change("fix", diff)], vanilla)
    assert set(result.changed_files()) == {ROOT / "schema.py", ROOT / "template.py"}


def test_a_file_absent_from_the_image_is_a_conflict_unless_excluded() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nold\n", ROOT / "test_a.py": None}
    diff = modify("a.py", "old", "new") + modify("test_a.py", "old", "new")
    [outcome] = port([change("fix", diff)], vanilla).outcomes
    assert outcome.state is PatchState.CONFLICT
    assert outcome.files[1].note == "absent from the image"
    [outcome] = port([change("fix", diff, exclude=("test_*",))], vanilla).outcomes
    assert outcome.state is PatchState.APPLIED
    assert outcome.files[1].action is FileAction.EXCLUDED


def test_partial_when_the_image_already_has_some_hunks() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nnew\n", ROOT / "b.py": b"ctx\nold\n"}
    diff = modify("a.py", "old", "new") + modify("b.py", "old", "new")
    [outcome] = port([change("fix", diff)], vanilla).outcomes
    assert outcome.state is PatchState.PARTIAL
    assert [f.action for f in outcome.files] == [FileAction.UNCHANGED, FileAction.PATCHED]


def test_everything_present_counts_as_upstream_by_content() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nnew\n"}
    result = port([change("fix", modify("a.py", "old", "new"))], vanilla)
    assert result.outcomes[0].state is PatchState.UPSTREAM
    assert result.outcomes[0].via == "content"
    assert result.changed_files() == {}


def test_added_and_upstream_by_ancestry() -> None:
    added = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+hello\n"
    vanilla = {ROOT / "new.py": None}
    skipped = change("old", added)
    result = port([change("add", added), skipped], vanilla, {skipped.change.id})
    assert [o.state for o in result.outcomes] == [PatchState.APPLIED, PatchState.UPSTREAM]
    assert result.outcomes[1].via == "ancestry"
    assert result.changed_files() == {ROOT / "new.py": b"hello\n"}


DELETE = "--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"


def test_a_change_that_only_deletes_a_file_still_there_is_refused() -> None:
    with pytest.raises(UnsafeInputError, match=r"ps/diff del: only deletes /src/gone\.py"):
        port([change("del", DELETE)], {ROOT / "gone.py": b"bye\n"})
    [gone] = port([change("del", DELETE)], {ROOT / "gone.py": None}).outcomes
    assert gone.state is PatchState.UPSTREAM  # already deleted in this image
    mixed = port(
        [change("del", DELETE + modify("a.py", "old", "new"))],
        {ROOT / "gone.py": b"bye\n", ROOT / "a.py": b"ctx\nold\n"},
    )
    [outcome] = mixed.outcomes
    assert outcome.state is PatchState.APPLIED
    assert outcome.files[0].action is FileAction.LEFT_IN_PLACE


def test_exclude_uses_git_wildmatch_semantics() -> None:
    assert excluded(["test/**"], PurePosixPath("test/srt/deep/test_a.py"))
    assert excluded(["*.md"], PurePosixPath("docs/a/b.md"))  # no slash: any depth
    assert excluded(["docs/*"], PurePosixPath("docs/a/b.md"))  # matches docs/a: all below it
    assert not excluded(["python/*.py"], PurePosixPath("python/sglang/x.py"))  # one segment
    assert excluded(["python/*.py"], PurePosixPath("python/x.py"))
    assert not excluded(["/x.py"], PurePosixPath("pkg/x.py"))  # a leading / anchors
    assert excluded(["x.py"], PurePosixPath("new.py"), PurePosixPath("old/x.py"))


@pytest.mark.parametrize("kind", ["binary", "symlink"])
def test_an_unsupported_entry_refuses_the_change_unless_excluded(kind: str) -> None:
    entry = {
        "binary": "diff --git a/assets/x.bin b/assets/x.bin\nindex 1..2 100644\n"
        "Binary files a/assets/x.bin and b/assets/x.bin differ\n",
        "symlink": "diff --git a/assets/link b/assets/link\nnew file mode 120000\n"
        "--- /dev/null\n+++ b/assets/link\n@@ -0,0 +1 @@\n+/etc/shadow\n",
    }[kind]
    diff = entry + modify("a.py", "old", "new")
    vanilla = {ROOT / "a.py": b"ctx\nold\n"}
    with pytest.raises(UnsafeInputError, match=f"ps/diff fix: assets/.*: a {kind} change"):
        port([change("fix", diff)], vanilla)
    [outcome] = port([change("fix", diff, exclude=("assets/**",))], vanilla).outcomes
    assert outcome.state is PatchState.APPLIED
    assert outcome.files[0].action is FileAction.EXCLUDED


def test_a_refused_change_leaves_no_trace_for_the_next() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nv1\n", ROOT / "b.py": b"ctx\nzzz\n"}
    refused = change("one", modify("a.py", "v1", "v2") + modify("b.py", "old", "new"))
    later = change("two", modify("a.py", "v1", "v3"))
    result = port([refused, later], vanilla)
    assert [o.state for o in result.outcomes] == [PatchState.CONFLICT, PatchState.APPLIED]
    assert result.changed_files() == {ROOT / "a.py": b"ctx\nv3\n"}


@pytest.mark.parametrize(
    ("vanilla", "diff"),
    [
        (b"a\r\nold\r\n", "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\r\n-old\r\n+new\r\n"),
        (b"a\nold\n", "--- a/f.py\r\n+++ b/f.py\r\n@@ -1,2 +1,2 @@\r\n a\r\n-old\r\n+new\r\n"),
        (
            "a\u2028x\nold\n".encode(),
            "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\u2028x\n-old\n+new\n",
        ),
        (b"\x0cpage\nold\n", "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n \x0cpage\n-old\n+new\n"),
    ],
    ids=["crlf-file", "crlf-diff", "u2028", "form-feed"],
)
def test_line_endings_and_separators_diff_does_not_split_on(vanilla: bytes, diff: str) -> None:
    result = port([change("fix", diff)], {ROOT / "f.py": vanilla})
    assert result.outcomes[0].state is PatchState.APPLIED
    patched = result.current[ROOT / "f.py"]
    assert patched == vanilla.replace(b"old", b"new")


def test_filling_an_empty_existing_file() -> None:
    diff = "--- a/__init__.py\n+++ b/__init__.py\n@@ -0,0 +1 @@\n+from .x import y\n"
    result = port([change("fill", diff)], {ROOT / "__init__.py": b""})
    assert result.outcomes[0].state is PatchState.APPLIED
    assert result.changed_files() == {ROOT / "__init__.py": b"from .x import y\n"}
