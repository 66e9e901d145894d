"""Unusual but real diffs, made by real git, resolved by the real resolver, ported."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.config.models import Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.errors import UpstreamError
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, PatchState, port
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from tests.patching.conftest import ROOT, PrHistory, image, local

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]


def test_a_non_ascii_file_name_ports(make_upstream: MakeUpstream) -> None:
    pad = b"".join(b"# %d\n" % i for i in range(6))
    up = make_upstream({"pkg/café.py": b"a = 1\n" + pad + b"b = 2\n"})
    up.history.squash_pr(1, "Accent", [Edit("pkg/café.py", "b = 2\n", "b = 3\n")])
    assert '"a/pkg/caf\\303\\251.py"' in up.change(1).change.diff  # git quotes it
    result = up.port([1], {"pkg/café.py": b"a = 0\n" + pad + b"b = 2\n"})
    assert result.outcomes[0].state is PatchState.APPLIED
    assert result.changed_files() == {ROOT / "pkg/café.py": b"a = 0\n" + pad + b"b = 3\n"}


def test_a_crlf_file_ports_three_way_and_as_a_local_diff(make_upstream: MakeUpstream) -> None:
    text = b"".join(b"line %d\r\n" % i for i in range(10))
    up = make_upstream({"win.py": text})
    (up.history.path / "win.py").write_bytes(text.replace(b"line 5\r\n", b"line five\r\n"))
    up.history.git("commit", "-qam", "CRLF (#1)")  # a squash merge, bytes as they are
    up.history.pulls[1] = up.history.head()
    ours = text.replace(b"line 1\r\n", b"line one\r\n")
    want = ours.replace(b"line 5\r\n", b"line five\r\n")
    assert up.port([1], {"win.py": ours}).changed_files() == {ROOT / "win.py": want}
    exact = port([local(up.change(1))], image({"win.py": ours}))
    assert exact.changed_files() == {ROOT / "win.py": want}


def test_filling_an_empty_init_ports(make_upstream: MakeUpstream) -> None:
    up = make_upstream({"pkg/__init__.py": b""})
    up.history.squash_pr(1, "Export", [Edit("pkg/__init__.py", "", "from .x import y\n")])
    parsed = up.change(1)
    assert parsed.files[0].kind.value == "modified"
    for change in (parsed, local(parsed)):
        result = port([change], image({"pkg/__init__.py": b""}))
        assert result.changed_files() == {ROOT / "pkg/__init__.py": b"from .x import y\n"}


def test_a_rename_ports_the_old_files_content_to_the_new_path(make_upstream: MakeUpstream) -> None:
    body = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(8))
    up = make_upstream({"old_name.py": body.encode()})
    up.history.squash_pr(
        1,
        "Rename and fix",
        [
            Edit("old_name.py", body, None),
            Edit("new_name.py", "", body.replace("return 6\n", "return 60\n")),
        ],
    )
    parsed = up.change(1)
    [file] = parsed.files
    assert file.kind.value == "renamed" and str(file.old_path) == "old_name.py"
    ours = body.replace("return 1\n", "return 100\n").encode()  # the image drifted meanwhile
    result = port([parsed], image({"old_name.py": ours, "new_name.py": None}))
    [outcome] = result.outcomes
    assert outcome.state is PatchState.APPLIED
    assert outcome.files[0].action is FileAction.CREATED
    assert "the old file stays in the image" in outcome.files[0].note
    assert result.changed_files() == {
        ROOT / "new_name.py": ours.replace(b"return 6\n", b"return 60\n")
    }


def test_added_upstream_but_different_in_the_image_conflicts(make_upstream: MakeUpstream) -> None:
    up = make_upstream({"a.py": b"a\n"})
    up.history.squash_pr(1, "New module", [Edit("new.py", "", "version = 2\n")])
    for files, state in [
        ({"new.py": None}, PatchState.APPLIED),
        ({"new.py": b"version = 2\n"}, PatchState.UPSTREAM),
        ({"new.py": b"version = 1\n"}, PatchState.CONFLICT),
    ]:
        [outcome] = up.port([1], files).outcomes
        assert outcome.state is state
    assert outcome.files[0].note == "added upstream, differs"
    assert outcome.files[0].hunks[0].status is HunkStatus.CONFLICT


def test_a_base_that_is_not_the_diffs_blob_is_refused(make_upstream: MakeUpstream) -> None:
    up = make_upstream({"a.py": b"a\nb\n"})
    up.history.squash_pr(1, "Fix", [Edit("a.py", "b\n", "B\n")])
    parsed = up.change(1).with_bases({PurePosixPath("a.py"): b"a\nb\nextra\n"})
    with pytest.raises(UpstreamError, match=r"PR #1: a\.py at .*: not the blob"):
        port([parsed], image({"a.py": b"a\nb\n"}))


def test_files_at_reads_a_blobless_partial_clone(tmp_path: Path) -> None:
    """In a `--filter=blob:none` mirror, cat-file fetches the blobs it is asked for."""
    history = History(tmp_path / "work", {"a.py": b"one\n", "dir/b.py": b"two\n"})
    history.git("config", "uploadpack.allowFilter", "true")
    commit = history.head()
    mirror = tmp_path / "partial.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", "--filter=blob:none", f"file://{history.path}", mirror],
        check=True,
    )
    missing = subprocess.run(
        ["git", "-C", mirror, "rev-list", "--objects", "--missing=print", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert missing.count("?") == 2  # no blob was fetched by the clone
    resolver = GitResolver(Upstream(git=f"file://{history.path}"), GitMirror("unused", tmp_path))
    resolver.mirror.repo = resolver.mirror.repo.__class__(mirror)
    resolver.mirror.path = mirror
    files = resolver.files_at(
        commit, [PurePosixPath("a.py"), PurePosixPath("dir/b.py"), PurePosixPath("gone.py")]
    )
    assert files == {
        PurePosixPath("a.py"): b"one\n",
        PurePosixPath("dir/b.py"): b"two\n",
        PurePosixPath("gone.py"): None,
    }
    assert resolver.files_at(commit, [PurePosixPath("dir")]) == {PurePosixPath("dir"): None}
