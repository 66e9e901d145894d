"""Rules users depend on that a diff from elsewhere must not slip past: a PR's diff must
replay to the blob it names, a change that only deletes cannot look "already upstream",
and a local diff of a CRLF file, exactly as `git diff` writes it, ports."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.config.models import Patch
from patchkeeper.demo.history import Edit
from patchkeeper.errors import UnsafeInputError, UpstreamError
from patchkeeper.patching.port import FileAction, ParsedChange, PatchState, port
from patchkeeper.upstream.model import PrState, UpstreamChange
from tests.patching.conftest import ROOT, PrHistory, image, journey

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]


def test_a_pr_diff_whose_hunks_disagree_with_its_index_line_is_refused(
    make_upstream: MakeUpstream,
) -> None:
    up = make_upstream({"a.py": b"a\nb\n"})
    up.history.squash_pr(1, "Fix", [Edit("a.py", "b\n", "B\n")])
    honest = up.change(1)
    assert port([honest], image({"a.py": b"a\nb\n"})).changed_files() == {ROOT / "a.py": b"a\nB\n"}
    assert "\n+B\n" in honest.change.diff and "\nindex " in honest.change.diff
    forged = replace(honest.change, diff=honest.change.diff.replace("\n+B\n", "\n+evil()\n"))
    parsed = ParsedChange.of(forged, ROOT).with_bases(honest.bases or {})
    with pytest.raises(UpstreamError, match=r"PR #1: a\.py at .*: the replayed diff is not the"):
        port([parsed], image({"a.py": b"a\nb\n"}))


def local_change(diff: str, exclude: tuple[str, ...] = ()) -> ParsedChange:
    patch = Patch(diff=Path("del.diff"), why="test", exclude=exclude)
    return ParsedChange.of(UpstreamChange("ps", patch, PrState.LOCAL, diff), ROOT)


DELETE = "--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
TEST = "--- a/tests/t.py\n+++ b/tests/t.py\n@@ -1 +1 @@\n-old\n+new\n"


def test_deleting_a_file_still_in_the_image_with_the_rest_excluded_is_refused() -> None:
    vanilla = {ROOT / "gone.py": b"bye\n", ROOT / "tests/t.py": b"old\n"}
    whole = port([local_change(DELETE + TEST)], vanilla).outcomes[0]
    assert whole.state is PatchState.APPLIED  # the test file is ported; the delete noted
    assert [f.action for f in whole.files] == [FileAction.LEFT_IN_PLACE, FileAction.PATCHED]
    with pytest.raises(UnsafeInputError, match=r"ps/diff del: only deletes /src/gone\.py, still"):
        port([local_change(DELETE + TEST, exclude=("tests/**",))], vanilla)


CRLF = b"a = 1\r\nb = 2\r\nc = 3\r\n"


def git_diff_of_a_crlf_file(tmp: Path) -> bytes:
    """What `git diff` writes for a CRLF file: LF header lines, CRLF content lines."""
    repo = tmp / "crlf-repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "m.py").write_bytes(CRLF)
    subprocess.run([*git, "add", "m.py"], check=True)
    who = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, *who, "commit", "-qm", "crlf"], check=True)
    (repo / "m.py").write_bytes(CRLF.replace(b"b = 2", b"b = 20"))
    return subprocess.run([*git, "diff"], capture_output=True, check=True).stdout


def test_a_local_diff_of_a_crlf_file_as_git_writes_it_ports(tmp_path: Path) -> None:
    diff = git_diff_of_a_crlf_file(tmp_path)
    assert b"\n@@ -1,3 +1,3 @@\n" in diff and b"\n-b = 2\r\n+b = 20\r\n" in diff
    (tmp_path / "crlf.diff").write_bytes(diff)
    patchset = (
        "upstream: {{git: '{url}', branch: main}}\nsource_root: /src\npatches:\n"
        f"  - diff: {tmp_path / 'crlf.diff'}\n    why: t\n"
    )
    run = journey(tmp_path, patchset, nightly={"m.py": CRLF}, upstream={"m.py": CRLF})
    result = run.sync()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["patches"][0]["state"] == "applied"
    overlay = Path(doc["overlay"]) / "rootfs" / PurePosixPath("/src/m.py").relative_to("/")
    assert overlay.read_bytes() == CRLF.replace(b"b = 2", b"b = 20")
