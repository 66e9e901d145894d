"""Recipe service keys patchkeeper does not model pass through to compose, checked
against the Compose Specification's schema."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from patchkeeper.config import load_recipe
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import base_service, dump, project_name
from patchkeeper.overlay.compose_cli import Compose

RECIPE = """\
image: example/sglang
tags: '^nightly-(?P<date>\\d{{8}})-(?P<sha>[0-9a-f]{{8}})$'
patchsets: [ps.yaml]
service:
  model: {{path: /models/m}}
  network_mode: null
{extra}
"""
KEYS = """\
  runtime: nvidia
  ulimits: {memlock: -1, stack: 67108864}
  ports: ["8072:8072"]
  restart: "no"
  logging: {driver: json-file, options: {max-size: 10m}}
  labels: {team: serving}
  devices: ["/dev/null:/dev/fake0"]
  env_file: [serving.env]
"""


def recipe(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / f"r-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(RECIPE.format(extra=extra))
    return path


def test_unmodelled_compose_keys_reach_the_service_and_compose_accepts_them(
    tmp_path: Path, compose: Compose
) -> None:
    loaded = load_recipe(recipe(tmp_path, KEYS))
    service = loaded.service
    document = base_service(service, "example/sglang:nightly-1", project_name(loaded.name, service))
    spec = document["services"]["sglang"]
    assert spec["runtime"] == "nvidia" and spec["restart"] == "no"
    assert spec["ulimits"] == {"memlock": -1, "stack": 67108864}
    assert spec["ports"] == ["8072:8072"]  # theirs, not the default port mapping
    assert "network_mode" not in spec
    (tmp_path / "serving.env").write_text("A=1\n")
    file = tmp_path / "compose.yaml"
    file.write_text(dump(document))
    with compose.project(f"pkt-{uuid.uuid4().hex[:8]}", [file]) as argv:
        done = subprocess.run([*argv, "config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rendered = YAML(typ="safe").load(done.stdout)["services"]["sglang"]
    assert rendered["runtime"] == "nvidia" and rendered["labels"] == {"team": "serving"}
    assert rendered["environment"]["A"] == "1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  ulimit: {memlock: -1}\n", "'ulimit': neither a patchkeeper nor a compose service key"),
        ("  restart: false\n", "restart: False is not of type 'string'"),
        ("  image: other/sglang:latest\n", "'image': patchkeeper pins the image by digest"),
    ],
)
def test_a_key_compose_does_not_know_is_an_error_naming_it(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(recipe(tmp_path, extra))
