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
    [("{", "Invalid JSON"), ('{"format": 1}', "generated_by"), ("[]", "Lock")],
)
def test_a_broken_lock_is_refused_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / LOCK_NAME).write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_lock(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / LOCK_NAME}: invalid lock: ")
    assert reason in str(refused.value)
