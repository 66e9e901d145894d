"""`sync --conflicts DIR` and `resolve` with untrusted input: the index is an artefact people
hand around, the store is committed, the directory may hold someone's half-done work."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.patching.resolutions import Resolution, load, record, sha256
from tests.patching.conftest import BASE, PATCHSET, ROOT, Journey, journey

RESOLVED = BASE.replace("b = 2\n", "b = 23\n")


def error(result: Any) -> str:
    """The error a `--json` command printed (exit 2), or its plain output."""
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        return str(result.output)
    return str(doc.get("error", result.stdout))


def synced_with_conflicts(tmp_path: Path, patchset: str = PATCHSET) -> Journey:
    run = journey(tmp_path, patchset)
    first = run.sync(conflicts=run.conflicts)
    assert first.exit_code == 1, first.output
    return run


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patch_key", "../../ESCAPED/pk"),
        ("patch_key", ".."),
        ("diff_sha256", "/../../../XX"),
        ("diff_sha256", "A" * 64),
        ("diff_sha256", "a" * 64 + "\n"),  # `$` would match before a final newline
        ("ours_sha256", "../x"),
        ("patchset", "../ps"),
        ("path", "/src/../../../etc/passwd"),
        ("path", "src/m.py"),
        ("file", "../../outside"),
        ("file", "/etc/passwd"),
        ("ours", "ps/./../../x"),
        ("patch", "other/pr-1"),
    ],
)
def test_an_index_naming_paths_outside_its_place_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: str
) -> None:
    run = synced_with_conflicts(tmp_path / "t")
    run.marked().write_text(RESOLVED)
    index = run.conflicts / "conflicts.json"
    doc = json.loads(index.read_text())
    doc["files"][0][field] = value
    index.write_text(json.dumps(doc))
    before = files_under(tmp_path)
    result = run.resolve("--json")
    assert result.exit_code == 2, result.output
    named = f"files.0.{field}: " if field != "patch" else "files.0: Value error, patch "
    assert f"{index}: {named}" in error(result)
    assert files_under(tmp_path) == before  # nothing written anywhere
    assert not (run.tmp / "ps.resolutions").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"format": 1}', "files: Field required"),
        (b'{"format": 1, "files": {}}', "files: Input should be a valid"),
        (b'{"format": 2, "files": []}', "format: Input should be 1"),
        (b"[1, 2]", "(top level): Input should be an object"),
        (b'{"format": 1, "files": [{"patch": "ps/pr-1"}]}', "files.0.patchset: Field required"),
        (b'{"format": 1, "files": [5]}', "files.0: Input should be an object"),
        (b"\xff\xfe{", "Invalid JSON"),
        (b"[" * 100_000, "(top level): "),
    ],
)
def test_an_index_of_the_wrong_shape_is_bad_input_naming_the_file(
    tmp_path: Path, content: bytes, says: str
) -> None:
    run = synced_with_conflicts(tmp_path)
    (run.conflicts / "conflicts.json").write_bytes(content)
    result = run.resolve("--json")
    assert result.exit_code == 2, result.output
    assert error(result).startswith(f"{run.conflicts / 'conflicts.json'}: ")
    assert says in error(result)


def test_a_field_the_index_lacks_is_named(tmp_path: Path) -> None:
    run = synced_with_conflicts(tmp_path)
    index = run.conflicts / "conflicts.json"
    doc = json.loads(index.read_text())
    del doc["files"][0]["diff_sha256"]
    index.write_text(json.dumps(doc))
    result = run.resolve("--json")
    assert result.exit_code == 2
    assert error(result) == f"{index}: files.0.diff_sha256: Field required"


def test_resolve_refuses_files_it_cannot_read_naming_them(tmp_path: Path) -> None:
    run = synced_with_conflicts(tmp_path)
    run.marked().write_bytes(RESOLVED.encode() + b"caf\xe9\n")
    result = run.resolve("--json")
    assert result.exit_code == 2
    assert (
        error(result)
        == f"{run.marked()}: not UTF-8 text (byte {len(RESOLVED) + 3}); save it as UTF-8"
    )
    run.marked().unlink()
    result = run.resolve("--json")
    assert result.exit_code == 2
    assert error(result) == f"{run.marked()}: the marked file is gone; run sync again"
    assert not (run.tmp / "ps.resolutions").exists()


def test_resolve_refuses_a_store_that_is_a_file_before_recording_anything(
    tmp_path: Path,
) -> None:
    run = synced_with_conflicts(tmp_path)
    run.marked().write_text(RESOLVED)
    (run.tmp / "ps.resolutions").write_text("not a directory\n")
    result = run.resolve("--json")
    assert result.exit_code == 2
    assert error(result) == (
        f"resolutions store {run.tmp / 'ps.resolutions'}: not writable: not a directory"
    )
    assert (run.tmp / "ps.resolutions").read_text() == "not a directory\n"


@contextlib.contextmanager
def tmpfs(where: Path) -> Iterator[Path]:
    """A real filesystem mounted for the test (remounted read-only by `read_only`)."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def test_resolve_into_a_read_only_patchset_directory_is_bad_input(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as root:
        run = synced_with_conflicts(root)
        run.marked().write_text(RESOLVED)
        read_only(root)
        result = run.resolve("--json")
    assert result.exit_code == 2
    assert error(result) == (
        f"resolutions store {root / 'ps.resolutions'}: not writable: Read-only file system"
    )


def test_sync_refuses_a_conflicts_dir_it_cannot_write_before_any_work(tmp_path: Path) -> None:
    run = journey(tmp_path)
    (run.tmp / "ps.yaml").write_text(PATCHSET.format(url=f"file://{tmp_path}/no-such-repo"))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = run.sync(conflicts=a_file)  # unreachable upstream: exit 3 if sync had started
    assert result.exit_code == 2
    assert error(result) == f"--conflicts {a_file}: not writable: not a directory"
    with tmpfs(tmp_path / "fs") as root:
        read_only(root)
        result = run.sync(conflicts=root / "conflicts")
    assert result.exit_code == 2
    assert error(result) == f"--conflicts {root / 'conflicts'}: not writable: Read-only file system"


@pytest.mark.parametrize(
    "patchset",
    [
        PATCHSET + "    id: '..'\n",
        PATCHSET + "    id: .hidden\n",
        PATCHSET + "    id: '.'\n",
        "name: '..'\n" + PATCHSET,
        "name: .ps\n" + PATCHSET,
    ],
)
def test_names_that_would_climb_out_of_the_conflicts_dir_are_refused(
    tmp_path: Path, patchset: str
) -> None:
    run = journey(tmp_path / "t", patchset)
    result = run.sync(conflicts=run.conflicts)
    assert result.exit_code == 2, result.output
    assert "should match pattern" in error(result)
    assert not run.conflicts.exists() and files_under(tmp_path / "t") == files_under(run.tmp)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        p.name for p in run.tmp.iterdir()
    )
    validate = CliRunner().invoke(app, ["validate", str(run.recipe)])
    assert validate.exit_code == 2, validate.output


def test_rerunning_sync_keeps_a_marked_file_being_resolved_and_names_it(tmp_path: Path) -> None:
    run = synced_with_conflicts(tmp_path)
    unedited = run.conflicts / ".ours" / "ps" / "pr-1" / "src" / "m.py"
    assert run.sync(conflicts=run.conflicts).exit_code == 1  # untouched: written again
    half_done = run.marked().read_text().replace("b = 3\n", "b = 23  # TODO\n", 1)
    run.marked().write_text(half_done)
    result = run.sync(conflicts=run.conflicts)
    assert result.exit_code == 2
    assert error(result) == (
        f"--conflicts {run.conflicts}: holds marked files edited since sync wrote them and not "
        "recorded: ps/pr-1/src/m.py; finish them and run `patchkeeper resolve`, or give "
        "another directory"
    )
    assert run.marked().read_text() == half_done and unedited.exists()
    run.marked().write_text(RESOLVED)
    assert run.resolve().exit_code == 0
    again = run.sync(conflicts=run.conflicts)  # recorded: nothing left to lose
    assert again.exit_code == 0, again.output


def test_a_markdown_underline_is_not_a_conflict_marker(tmp_path: Path) -> None:
    run = synced_with_conflicts(tmp_path)
    resolved = BASE.replace("b = 2\n", 'b = """\nTitle\n=======\n"""\n')
    run.marked().write_text(resolved)
    result = run.resolve("--json")
    assert result.exit_code == 0, result.output
    synced = run.sync()
    assert synced.exit_code == 0, synced.output
    overlay = Path(json.loads(synced.stdout)["overlay"]) / "rootfs/src/m.py"
    assert overlay.read_text() == resolved


def test_a_store_holding_conflict_markers_is_refused_even_with_matching_sha256(
    tmp_path: Path,
) -> None:
    run = synced_with_conflicts(tmp_path)
    run.marked().write_text(RESOLVED)
    assert run.resolve().exit_code == 0
    [entry] = [p for p in (run.tmp / "ps.resolutions" / "pr-1").iterdir()]
    marked = b"<<<<<<< image\nb = 3\n=======\nb = 20\n>>>>>>> ps/PR #1\n"
    (entry / "resolved").write_bytes(marked)
    meta = json.loads((entry / "resolution.json").read_text())
    meta["resolved_sha256"] = sha256(marked)
    (entry / "resolution.json").write_text(json.dumps(meta))
    result = run.sync()
    assert result.exit_code == 2, result.output
    assert error(result) == f"{entry / 'resolved'}: still holds conflict markers"
    assert not (run.tmp / "out").exists() or not any((run.tmp / "out").rglob("m.py"))


def test_a_stale_resolution_is_named_in_the_report(tmp_path: Path) -> None:
    run = journey(tmp_path)
    ours = BASE.replace("b = 2", "b = 3").encode()
    earlier_diff = "0" * 64  # the PR's diff when the resolution was recorded
    resolution = Resolution(ROOT / "m.py", ours, earlier_diff, RESOLVED.encode())
    record(run.tmp / "ps.yaml", "pr-1", resolution)
    result = run.sync()
    assert result.exit_code == 1
    [file] = json.loads(result.stdout)["patches"][0]["files"]
    note = "a resolution was recorded for another version of this diff: resolve again"
    assert file["note"] == note
    plain = run.sync(as_json=False)
    assert plain.exit_code == 1
    assert f"conflict ps/pr-1 /src/m.py: {note}" in plain.output
    assert load(run.tmp / "ps.yaml", "pr-1") == (resolution,)


LOCAL_DIFF = "--- a/m.py\n+++ b/m.py\n@@ -8,3 +8,3 @@\n # 6\n # 7\n-b = 2\n+b = 20\n"


def test_a_conflicting_local_diff_says_there_is_no_marked_file(tmp_path: Path) -> None:
    (tmp_path / "local.diff").write_text(LOCAL_DIFF)
    patchset = (
        "upstream: {{git: '{url}', branch: main}}\nsource_root: /src\npatches:\n"
        f"  - diff: {tmp_path / 'local.diff'}\n    why: t\n"
    )
    run = journey(tmp_path, patchset)
    result = run.sync(conflicts=run.conflicts, as_json=False)
    assert result.exit_code == 1
    assert "diff3-marked files in" not in result.output
    assert (
        "ps/diff local: /src/m.py: matched exactly (no upstream blob to merge against), so no "
        "marked file: update the diff file against the image's file"
    ) in " ".join(result.output.split())
    resolve = run.resolve("--json")
    assert resolve.exit_code == 2
    assert error(resolve).startswith(f"{run.conflicts / 'conflicts.json'}: lists no marked file")


def test_sync_refuses_a_resolutions_store_that_is_not_a_directory(tmp_path: Path) -> None:
    run = journey(tmp_path)
    (run.tmp / "ps.resolutions").write_text("a file\n")
    result = run.sync()
    assert result.exit_code == 2, result.output
    assert error(result) == (
        f"{run.tmp / 'ps.resolutions'}: not a directory of resolutions; move it away"
    )


def test_a_diff_file_whose_name_starts_with_a_dot_needs_an_id(tmp_path: Path) -> None:
    (tmp_path / "..diff").write_text(LOCAL_DIFF)
    patchset = PATCHSET.replace("pr: 1", f"diff: {tmp_path / '..diff'}")
    run = journey(tmp_path, patchset)
    result = run.sync(conflicts=run.conflicts)
    assert result.exit_code == 2
    assert "the patch's id '.' (its diff file's name) starts with a dot" in error(result)
    assert not run.conflicts.exists()
    named = journey(tmp_path / "named", patchset + "    id: local\n").sync()
    assert named.exit_code == 1, named.output  # ports (and conflicts) under its id
