"""The compose files an overlay ships: what compose is told to mount, run and pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkeeper.config.models import Service
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import (
    absolute,
    base_service,
    dump,
    flag,
    overlay_mounts,
    override,
    service_command,
)
from tests.overlay.locks import PINNED, make_lock, sha

FILES = {"/src/b.py": b"b\n", "/src/a.py": b"a\n"}
TEMPLATE = "{{ messages }}"


def service(**fields: object) -> Service:
    return Service.model_validate({"model": {"path": "/models/tiny"}, **fields})


def test_mounts_are_sorted_read_only_relative_and_end_with_the_template(tmp_path: Path) -> None:
    lock = make_lock("f" * 64, FILES, TEMPLATE)
    mounts = overlay_mounts(lock, tmp_path)
    assert [(m.relative, m.target, m.sha256) for m in mounts] == [
        ("./rootfs/src/a.py", "/src/a.py", sha(b"a\n")),
        ("./rootfs/src/b.py", "/src/b.py", sha(b"b\n")),
        ("./chat_template.jinja", "/patchkeeper/chat_template.jinja", sha(TEMPLATE.encode())),
    ]
    assert [m.source for m in mounts] == [
        tmp_path.resolve() / "rootfs/src/a.py",
        tmp_path.resolve() / "rootfs/src/b.py",
        tmp_path.resolve() / "chat_template.jinja",
    ]
    assert overlay_mounts(make_lock("f" * 64, FILES), tmp_path)[-1].target == "/src/b.py"


def test_the_override_pins_the_digest_and_mounts_every_file_read_only() -> None:
    lock = make_lock("f" * 64, FILES)
    document = override(service(), lock)
    spec = document["services"]["sglang"]
    assert spec["image"] == PINNED
    assert "command" not in spec  # no template: the base service's command stands
    assert spec["volumes"] == [
        {"type": "bind", "source": "./rootfs/src/a.py", "target": "/src/a.py", "read_only": True},
        {"type": "bind", "source": "./rootfs/src/b.py", "target": "/src/b.py", "read_only": True},
    ]


def test_a_template_adds_the_chat_template_flag_to_the_command() -> None:
    document = override(service(args=["--tp-size", "1"]), make_lock("f" * 64, FILES, TEMPLATE))
    command = document["services"]["sglang"]["command"]
    assert command[-2:] == ["--chat-template", "/patchkeeper/chat_template.jinja"]
    assert flag(command, "--tp-size") == "1"
    assert flag(command, "--model-path") == "/models/tiny"


def test_the_base_service_renders_the_recipe() -> None:
    recipe = service(
        name="srv",
        container_name="srv-1",
        port=31000,
        model={"path": "/models/m", "host_path": "/data/m"},
        environment={"B": "2", "A": "1"},
        volumes=["/cache:/root/.cache"],
        gpus=2,
        network_mode=None,
        shm_size="16g",
    )
    spec = base_service(recipe, "example/sglang:nightly")["services"]["srv"]
    assert spec["image"] == "example/sglang:nightly"
    assert spec["container_name"] == "srv-1"
    assert spec["command"] == [
        "python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/models/m",
        "--host",
        "0.0.0.0",
        "--port",
        "31000",
    ]
    assert list(spec["environment"].items()) == [("A", "1"), ("B", "2")]
    assert spec["volumes"] == ["/data/m:/models/m:ro", "/cache:/root/.cache"]
    assert spec["ports"] == ["31000:31000"]
    assert (spec["ipc"], spec["shm_size"]) == ("host", "16g")
    assert "network_mode" not in spec
    assert spec["healthcheck"] == {
        "test": ["CMD-SHELL", "curl -fsS http://127.0.0.1:31000/health || exit 1"],
        "interval": "30s",
        "timeout": "10s",
        "retries": 5,
        "start_period": "600s",
    }
    device = {"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}
    assert spec["deploy"] == {"resources": {"reservations": {"devices": [device]}}}


def test_host_networking_publishes_no_ports_and_no_gpus_reserves_none() -> None:
    spec = base_service(service(gpus=None, healthcheck={"test": ["CMD", "true"]}), "i")
    spec = spec["services"]["sglang"]
    assert spec["network_mode"] == "host" and "ports" not in spec
    assert "deploy" not in spec and "container_name" not in spec and "volumes" not in spec
    assert "environment" not in spec
    assert spec["healthcheck"]["test"] == ["CMD", "true"]


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


def test_service_command_reads_back_what_was_rendered(tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(dump(base_service(service(port=30001), "i")))
    command = service_command(compose_file, "sglang")
    assert flag(command, "--port") == "30001"


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


def test_volumes_come_from_the_model_mount_or_the_recipe_alone() -> None:
    model_only = service(model={"path": "/models/m", "host_path": "/data/m"})
    assert base_service(model_only, "i")["services"]["sglang"]["volumes"] == [
        "/data/m:/models/m:ro"
    ]
    recipe_only = service(volumes=["/cache:/root/.cache"])
    assert base_service(recipe_only, "i")["services"]["sglang"]["volumes"] == [
        "/cache:/root/.cache"
    ]
