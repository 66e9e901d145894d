"""The lock file: written diff-friendly in the model's field order, read back whole or
refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.lock import LOCK_NAME, read_lock
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
