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
    launch_command,
    overlay_mounts,
    override,
    project_name,
    service_command,
)
from tests.overlay.locks import FILES, PINNED, TEMPLATE, make_lock, sha


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


def test_the_default_service_runs_sglang_on_the_host_with_all_gpus() -> None:
    assert base_service(service(), "example/sglang:nightly", "demo") == {
        "name": "demo",
        "services": {
            "sglang": {
                "image": "example/sglang:nightly",
                "command": [
                    *("python3", "-m", "sglang.launch_server", "--model-path", "/models/tiny"),
                    *("--host", "0.0.0.0", "--port", "30000"),
                ],
                "network_mode": "host",
                "ipc": "host",
                "healthcheck": {
                    "test": [
                        "CMD-SHELL",
                        "curl -fsS http://127.0.0.1:30000/health || exit 1",
                    ],
                    "interval": "30s",
                    "timeout": "10s",
                    "retries": 5,
                    "start_period": "600s",
                },
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [
                                {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
                            ]
                        }
                    }
                },
            }
        },
    }


def test_every_modelled_field_reaches_the_compose_service_in_a_fixed_order() -> None:
    custom = service(
        name="web",
        container_name="web-1",
        port=8080,
        model={"path": "/models/tiny", "host_path": "/srv/models/tiny"},
        command=["serve"],
        args=["--tp", "2"],
        environment={"B": "2", "A": "1"},
        volumes=["/cache:/root/.cache"],
        healthcheck={
            "path": "/ready",
            "interval": "1s",
            "timeout": "2s",
            "retries": 3,
            "start_period": "4s",
        },
        gpus=2,
        ipc=None,
        shm_size="8g",
        network_mode=None,
        restart="no",
    )
    spec = base_service(custom, "img", "proj")["services"]["web"]
    assert list(spec) == [
        "image",
        "container_name",
        "command",
        "environment",
        "volumes",
        "shm_size",
        "ports",
        "healthcheck",
        "deploy",
        "restart",
    ]
    assert spec["container_name"] == "web-1"
    assert spec["command"] == [
        *("serve", "--model-path", "/models/tiny", "--host", "0.0.0.0", "--port", "8080"),
        *("--tp", "2"),
    ]
    assert list(spec["environment"].items()) == [("A", "1"), ("B", "2")]
    assert spec["volumes"] == ["/srv/models/tiny:/models/tiny:ro", "/cache:/root/.cache"]
    assert spec["shm_size"] == "8g" and spec["restart"] == "no"
    assert spec["ports"] == ["8080:8080"]
    assert spec["healthcheck"] == {
        "test": ["CMD-SHELL", "curl -fsS http://127.0.0.1:8080/ready || exit 1"],
        "interval": "1s",
        "timeout": "2s",
        "retries": 3,
        "start_period": "4s",
    }
    assert spec["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2


def test_a_given_healthcheck_ports_or_no_gpus_are_taken_as_given() -> None:
    spec = base_service(
        service(
            healthcheck={"test": ["CMD", "true"]},
            gpus=None,
            network_mode="bridge",
            ports=["1:2"],
        ),
        "img",
        "p",
    )["services"]["sglang"]
    assert spec["healthcheck"]["test"] == ["CMD", "true"]
    assert spec["ports"] == ["1:2"] and spec["network_mode"] == "bridge"
    assert list(spec)[-1] == "ports"  # theirs, where passed-through keys go; none of ours
    assert "deploy" not in spec and "volumes" not in spec and "environment" not in spec
    only_theirs = base_service(service(volumes=["/a:/b"]), "img", "p")["services"]["sglang"]
    assert only_theirs["volumes"] == ["/a:/b"]


def test_the_chat_template_argument_comes_last() -> None:
    assert launch_command(service(args=["--x"]), with_template=True)[-3:] == [
        "--x",
        "--chat-template",
        "/patchkeeper/chat_template.jinja",
    ]
    assert "--chat-template" not in launch_command(service(), with_template=False)


@pytest.mark.parametrize(
    ("recipe", "project", "expected"),
    [
        ("Qwen3.6 27B", None, "qwen3-6-27b"),
        ("_-demo-_", None, "demo"),
        ("a__b--c", None, "a__b--c"),
        ("...", None, "patchkeeper"),
        ("anything", "given", "given"),
    ],
)
def test_the_project_name_is_the_recipes_made_safe(
    recipe: str, project: str | None, expected: str
) -> None:
    assert project_name(recipe, service(project=project)) == expected


def test_the_override_pins_the_image_and_mounts_each_file_read_only_sorted() -> None:
    lock = make_lock("f" * 64, FILES, TEMPLATE)
    assert override(service(args=["--x"]), lock, "../../.store/n/") == {
        "services": {
            "sglang": {
                "image": PINNED,
                "command": [
                    *launch_command(service(args=["--x"]), with_template=False),
                    *("--chat-template", "/patchkeeper/chat_template.jinja"),
                ],
                "volumes": [
                    {
                        "type": "bind",
                        "source": "../../.store/n/rootfs/src/a.py",
                        "target": "/src/a.py",
                        "read_only": True,
                    },
                    {
                        "type": "bind",
                        "source": "../../.store/n/rootfs/src/b.py",
                        "target": "/src/b.py",
                        "read_only": True,
                    },
                    {
                        "type": "bind",
                        "source": "../../.store/n/chat_template.jinja",
                        "target": "/patchkeeper/chat_template.jinja",
                        "read_only": True,
                    },
                ],
            }
        }
    }
    plain = override(service(name="web"), make_lock("f" * 64, FILES), "./")["services"]["web"]
    assert list(plain) == ["image", "volumes"]
    assert [v["source"] for v in plain["volumes"]] == ["./rootfs/src/a.py", "./rootfs/src/b.py"]


def test_overlay_mounts_carry_what_each_file_must_hash_to(tmp_path: Path) -> None:
    lock = make_lock("f" * 64, FILES, TEMPLATE)
    mounts = overlay_mounts(lock, tmp_path / "x" / ".." / "o")
    root = (tmp_path / "o").resolve()
    assert [(m.source, m.relative, m.target, m.sha256) for m in mounts] == [
        (root / "rootfs/src/a.py", "rootfs/src/a.py", "/src/a.py", sha(b"a\n")),
        (root / "rootfs/src/b.py", "rootfs/src/b.py", "/src/b.py", sha(b"b\n")),
        (
            root / "chat_template.jinja",
            "chat_template.jinja",
            "/patchkeeper/chat_template.jinja",
            sha(TEMPLATE.encode()),
        ),
    ]


def test_a_volume_without_a_source_is_left_as_it_is(tmp_path: Path) -> None:
    tmpfs = {"type": "tmpfs", "target": "/scratch"}
    document = {"services": {"s": {"volumes": [tmpfs]}}}
    assert absolute(document, tmp_path)["services"]["s"]["volumes"] == [tmpfs]


def test_a_flag_given_last_still_has_its_value() -> None:
    assert flag(["serve", "--port", "1"], "--port") == "1"


def test_the_service_command_is_read_as_strings(tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text("services: {sglang: {command: [serve, --port, 30000, --x, 0.5]}}\n")
    assert service_command(compose_file, "sglang") == ["serve", "--port", "30000", "--x", "0.5"]


def test_words_yaml_1_1_reads_as_booleans_stay_strings_at_any_depth() -> None:
    text = dump({"s": {"restart": "no", "list": ["on", "onwards", 1], "x": "yes"}})
    assert text == 's:\n  restart: "no"\n  list:\n  - "on"\n  - onwards\n  - 1\n  x: "yes"\n'
