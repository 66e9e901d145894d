"""The lock file: written diff-friendly in the model's field order, read back whole or
refused with the file named."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.lock import LOCK_NAME, read_lock
from patchkeeper.patching.diff import FileChange
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, PatchState
from patchkeeper.upstream.model import PrState
from tests.overlay.locks import make_lock

FILES = {"/src/a.py": b"a\n"}


def test_the_lock_is_indented_json_in_field_order_and_reads_back(tmp_path: Path) -> None:
    lock = make_lock("f" * 64, FILES, "{{ x }}")
    text = lock.dump()
    assert text.startswith('{\n  "format": 1,\n  "generated_by": "patchkeeper tests",\n')
    assert '\n  "image": {\n    "ref": "example/sglang:nightly",\n    "digest": ' in text
    assert text.endswith("\n}\n")
    assert list(json.loads(text)) == list(type(lock).model_fields)
    (tmp_path / LOCK_NAME).write_text(text)
    assert read_lock(tmp_path) == lock


def test_a_directory_without_a_lock_is_not_an_overlay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        read_lock(tmp_path)
    assert str(refused.value) == f"{tmp_path}: not an overlay (no {LOCK_NAME})"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "Invalid JSON"),
        ('{"format": 1}', "generated_by"),
        ("[]", "the document: Input should be an object"),
    ],
)
def test_a_broken_lock_is_refused_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / LOCK_NAME).write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_lock(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / LOCK_NAME}: invalid lock: ")
    assert reason in str(refused.value)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_a_lock_of_a_format_this_patchkeeper_does_not_know_is_refused(
    tmp_path: Path, version: int
) -> None:
    body = json.loads(make_lock("f" * 64, FILES).dump())
    (tmp_path / LOCK_NAME).write_text(json.dumps({**body, "format": version}))
    with pytest.raises(ConfigError) as refused:
        read_lock(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / LOCK_NAME}: invalid lock: format: format {version} is not one this "
        "patchkeeper reads (it reads format 1): re-run `patchkeeper sync`, or use the "
        "patchkeeper that wrote it"
    )


def test_an_overlay_with_a_lock_of_an_unknown_format_is_exit_2_naming_the_lock(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from patchkeeper.cli import app

    overlay = tmp_path / "overlays" / ".store" / "nightly-1"
    overlay.mkdir(parents=True)
    body = json.loads(make_lock("f" * 64, FILES).dump())
    (overlay / LOCK_NAME).write_text(json.dumps({**body, "format": 99}))
    done = CliRunner().invoke(app, ["up", "--overlay", str(overlay), "--dry-run"])
    assert done.exit_code == 2, done.output
    assert f"{overlay / LOCK_NAME}: invalid lock: format: format 99" in done.output


def _patch(**changes: Any) -> dict[str, Any]:
    """One locked patch with one file and one hunk, as `sync` writes it."""
    hunk = {"header": "@@ -1 +1 @@", "status": "applied", "line": 1, "reason": ""}
    file = {"path": "src/a.py", "kind": "modified", "action": "patched", "hunks": [hunk]}
    patch = {
        "id": "p1",
        "patchset": "demo",
        "pr": 7,
        "diff_file": None,
        "state": "applied",
        "via": "",
        "pr_state": "open",
        "title": None,
        "why": "a test",
        "witness": None,
        "head": None,
        "merge_commit": None,
        "base": None,
        "diff_sha256": "4" * 64,
        "hunks": {"applied": 1, "present": 0, "conflict": 0},
        "files": [file],
    }
    for key, value in changes.items():
        target = hunk if key == "status" else file if key in ("kind", "action") else patch
        target[key] = value
    return patch


def _raw_lock(patch: dict[str, Any]) -> str:
    """A lock's JSON holding `patch` as given, unchecked (as a newer or tampered lock)."""
    return json.dumps({**json.loads(make_lock("f" * 64).dump()), "patches": [patch]})


def test_a_lock_read_back_gives_its_states_as_the_stages_enums(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(make_lock("f" * 64, patches=[_patch()]).dump())
    patch = read_lock(tmp_path).patches[0]
    assert patch.state is PatchState.APPLIED
    assert patch.pr_state is PrState.OPEN
    assert patch.files[0].kind is FileChange.MODIFIED
    assert patch.files[0].action is FileAction.PATCHED
    assert patch.files[0].hunks[0].status is HunkStatus.APPLIED


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("state", "patches.0.state"),
        ("pr_state", "patches.0.pr_state"),
        ("kind", "patches.0.files.0.kind"),
        ("action", "patches.0.files.0.action"),
        ("status", "patches.0.files.0.hunks.0.status"),
    ],
)
def test_a_state_this_patchkeeper_does_not_know_is_exit_2_naming_the_lock_and_field(
    tmp_path: Path, field: str, where: str
) -> None:
    from typer.testing import CliRunner

    from patchkeeper.cli import app

    overlay = tmp_path / "overlays" / ".store" / "nightly-1"
    overlay.mkdir(parents=True)
    (overlay / LOCK_NAME).write_text(_raw_lock(_patch(**{field: "half-baked"})))
    with pytest.raises(ConfigError) as refused:
        read_lock(overlay)
    assert str(refused.value).startswith(f"{overlay / LOCK_NAME}: invalid lock: {where}: ")
    assert "Input should be" in str(refused.value)
    done = CliRunner().invoke(app, ["up", "--overlay", str(overlay), "--dry-run"])
    assert done.exit_code == 2, done.output
    assert f"invalid lock: {where}: Input should be" in " ".join(done.output.split())


_FIELDS = {
    "state": PatchState,
    "pr_state": PrState,
    "kind": FileChange,
    "action": FileAction,
    "status": HunkStatus,
}


@settings(max_examples=150, deadline=None)
@given(
    members=st.fixed_dictionaries(
        {name: st.sampled_from(list(enum)) for name, enum in _FIELDS.items()}
    ),
    field=st.sampled_from(sorted(_FIELDS)),
    stranger=st.text(max_size=20),
)
def test_states_round_trip_byte_for_byte_and_any_other_value_is_refused(
    members: dict[str, Any], field: str, stranger: str
) -> None:
    """Written as the members' values (the bytes a `str` field wrote), read back as the
    members; a value outside the enum, from a newer or a tampered lock, is refused."""
    plain = make_lock("f" * 64, patches=[_patch(**{k: v.value for k, v in members.items()})])
    text = plain.dump()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / LOCK_NAME).write_text(text)
        lock = read_lock(Path(folder))
        assert lock.dump() == text
        patch = lock.patches[0]
        read = {
            "state": patch.state,
            "pr_state": patch.pr_state,
            "kind": patch.files[0].kind,
            "action": patch.files[0].action,
            "status": patch.files[0].hunks[0].status,
        }
        assert all(read[k] is members[k] for k in members)
        assert json.loads(text)["patches"][0]["state"] == members["state"].value
        if stranger in set(_FIELDS[field]):
            return
        (Path(folder) / LOCK_NAME).write_text(_raw_lock(_patch(**{field: stranger})))
        with pytest.raises(ConfigError, match=f"invalid lock: patches\\.0\\..*{field}: "):
            read_lock(Path(folder))
