"""Files a change creates: what is reported for them, and the directories their mounts need."""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.image.model import PathKind
from patchkeeper.patching.diff import FileChange
from patchkeeper.patching.hunks import HunkResult, HunkStatus
from patchkeeper.patching.port import (
    FileAction,
    FileOutcome,
    PatchState,
    mount_dirs,
    port,
    refuse_unmountable,
    sha256,
)
from tests.patching.changes import ROOT, change, modify


def added(path: str, body: str = "x = 1\n") -> str:
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{body}"


def test_a_created_file_is_reported_with_each_hunk_applied_at_line_one() -> None:
    parsed = change("c", added("pkg/new.py"))
    result = port([parsed], {ROOT / "pkg/new.py": None})
    [outcome] = result.outcomes
    [hunk] = parsed.files[0].hunks
    assert outcome.files == (
        FileOutcome(
            ROOT / "pkg/new.py",
            FileChange.ADDED,
            FileAction.CREATED,
            (HunkResult(hunk, HunkStatus.APPLIED, 1),),
        ),
    )
    assert (outcome.state, outcome.via) == (PatchState.APPLIED, "")
    assert result.changed_files() == {ROOT / "pkg/new.py": b"x = 1\n"}


def test_sha256_of_an_absent_file_is_none() -> None:
    assert sha256(None) is None
    assert sha256(b"") == hashlib.sha256(b"").hexdigest()
    assert sha256(b"x\n") == hashlib.sha256(b"x\n").hexdigest()


def test_mount_dirs_are_those_of_files_created_and_not_excluded() -> None:
    changes = [
        change("one", added("a/b/new.py") + added("top.py") + added("docs/x/y.md")),
        change("two", added("a/c/other.py"), exclude=("docs/",)),
        change("three", modify("kept/f.py", "old", "new")),
    ]
    vanilla = {ROOT / "a/b/new.py": None, ROOT / "top.py": None, ROOT / "docs/x/y.md": None}
    vanilla[ROOT / "a/c/other.py"] = b"exists\n"  # already in the image: nothing to mount
    assert mount_dirs(changes, vanilla) == {
        ROOT / "a",
        ROOT / "a/b",
        ROOT / "docs",
        ROOT / "docs/x",
    }
    excluded = change("e", added("docs/x/y.md"), exclude=("docs/",))
    assert mount_dirs([excluded], {ROOT / "docs/x/y.md": None}) == set()


RENAME = (
    "diff --git a/old/f.py b/new/f.py\nsimilarity index 90%\nrename from old/f.py\n"
    "rename to new/f.py\n--- a/old/f.py\n+++ b/new/f.py\n@@ -1,2 +1,2 @@\n ctx\n-v1\n+v2\n"
)


def test_a_file_renamed_into_a_new_directory_needs_its_mount_dirs() -> None:
    vanilla = {ROOT / "old/f.py": b"ctx\nv1\n", ROOT / "new/f.py": None}
    assert mount_dirs([change("r", RENAME)], vanilla) == {ROOT / "new"}
    by_old_name = change("r", RENAME, exclude=("old/",))  # excluded by its path before
    assert mount_dirs([by_old_name], vanilla) == set()
    by_new_name = change("r", RENAME, exclude=("new/",))
    assert mount_dirs([by_new_name], vanilla) == set()
    vanilla[ROOT / "new/f.py"] = b"ctx\nv1\n"
    assert mount_dirs([change("r", RENAME)], vanilla) == set()


def kinds_of(**named: PathKind) -> dict[PurePosixPath, PathKind]:
    return {ROOT / name.replace("__", "/"): kind for name, kind in named.items()}


def test_files_below_real_or_absent_directories_mount() -> None:
    changes = [change("c", added("a/b/c/new.py"))]
    vanilla = {ROOT / "a/b/c/new.py": None}
    refuse_unmountable(changes, vanilla, kinds_of(a="dir", a__b="dir", a__b__c="dir"))
    refuse_unmountable(changes, vanilla, kinds_of(a="dir", a__b="absent"))  # the rest: below it


def test_a_symlink_deeper_than_a_real_directory_is_refused() -> None:
    changes = [change("c", added("a/b/new.py"))]
    with pytest.raises(UnsafeInputError) as err:
        refuse_unmountable(changes, {ROOT / "a/b/new.py": None}, kinds_of(a="dir", a__b="symlink"))
    assert str(err.value) == (
        "ps/diff c: a/b/new.py: /src/a/b is a symlink in the image; the overlay would mount "
        "the new file wherever it points, outside /src"
    )


def test_each_created_file_is_checked_after_one_below_an_absent_directory() -> None:
    changes = [change("c", added("fresh/new.py") + added("link/new.py"))]
    vanilla = {ROOT / "fresh/new.py": None, ROOT / "link/new.py": None}
    with pytest.raises(UnsafeInputError, match=r"/src/link is a symlink"):
        refuse_unmountable(changes, vanilla, kinds_of(fresh="absent", link="symlink"))


@pytest.mark.parametrize(
    ("kind", "what"), [("file", "regular file"), ("other", "device file or FIFO")]
)
def test_a_directory_that_is_not_one_is_named_by_its_kind(kind: PathKind, what: str) -> None:
    changes = [change("c", added("v/inner.py"))]
    with pytest.raises(UnsafeInputError) as err:
        refuse_unmountable(changes, {ROOT / "v/inner.py": None}, kinds_of(v=kind))
    assert str(err.value) == (
        f"ps/diff c: v/inner.py: /src/v is a {what} in the image, not a directory; "
        "the overlay's mount would fail at container start"
    )
