"""The compose files an overlay ships: what compose is told to mount, run and pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkeeper.config.models import Service
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import (
    absolute,
    dump,
    flag,
    service_command,
)

FILES = {"/src/b.py": b"b\n", "/src/a.py": b"a\n"}
TEMPLATE = "{{ messages }}"


def service(**fields: object) -> Service:
    return Service.model_validate({"model": {"path": "/models/tiny"}, **fields})


def test_absolute_resolves_only_relative_bind_sources(tmp_path: Path) -> None:
    document = {
        "services": {
            "sglang": {
                "image": "i",
                "volumes": [
                    {"type": "bind", "source": "./rootfs/a.py", "target": "/a.py"},
                    {"type": "bind", "source": "/host/b.py", "target": "/b.py"},
                    "/short:/syntax",
                ],
            },
            "other": {"image": "j"},
        }
    }
    resolved = absolute(document, tmp_path)
    volumes = resolved["services"]["sglang"]["volumes"]
    assert volumes[0]["source"] == str(tmp_path.resolve() / "rootfs/a.py")
    assert volumes[1:] == document["services"]["sglang"]["volumes"][1:]
    assert resolved["services"]["other"] == {"image": "j"}
    assert document["services"]["sglang"]["volumes"][0]["source"] == "./rootfs/a.py"


def test_the_last_flag_wins_in_either_spelling() -> None:
    command = ["serve", "--port", "1", "--port=2", "--model-path", "/m", "--port"]
    assert flag(command, "--port") == "2"  # a trailing flag without a value sets nothing
    assert flag(command, "--model-path") == "/m"
    assert flag(command, "--absent") is None
    assert flag(["--portx", "9", "--port=3"], "--port") == "3"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("services: {other: {command: [a]}}\n", "no command for service 'sglang'"),
        ("services: {sglang: {command: run it}}\n", "has no command list"),
        ("services: [unclosed\n", "no command for service"),
    ],
)
def test_service_command_names_the_file_and_service(tmp_path: Path, text: str, reason: str) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(text)
    with pytest.raises(ConfigError, match=reason) as err:
        service_command(compose_file, "sglang")
    assert str(compose_file) in str(err.value)


def test_dump_keeps_long_paths_on_one_line() -> None:
    long = "/" + "x" * 300
    assert f"source: {long}\n" in dump({"services": {"s": {"volumes": [{"source": long}]}}})


def test_a_flag_value_may_itself_hold_an_equals_sign() -> None:
    assert flag(['--json-model-override-args={"a": 1}=x'], "--json-model-override-args") == (
        '{"a": 1}=x'
    )
