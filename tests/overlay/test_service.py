"""Which compose files, project and service `up` drives for an overlay: the overlay's
own, or the user's compose file with a rendered override (real yaml, real overlays)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose import dump
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.service import (
    UserCompose,
    adopted_override,
    composed,
    links_of,
    record_override,
    user_command,
)
from patchkeeper.overlay.write import STORE
from tests.overlay.locks import PINNED, overlay

TEMPLATE_PATH = "/patchkeeper/chat_template.jinja"
USER = """\
services:
  qwen:
    image: example/sglang:nightly
    command: {command}
    ipc: host
  other: {{image: busybox}}
"""


def user_file(directory: Path, command: str = "[serve, --port, 30000]") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / "compose.yaml"
    file.write_text(USER.format(command=command))
    return file


def load(text: str) -> Any:
    return YAML(typ="safe").load(text)


def test_the_overlays_own_service_runs_from_its_compose_files(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    target = composed(store_dir, None, None, tmp_path / "scratch")
    assert target.overlay == store_dir
    assert target.lock == read_lock(store_dir)
    assert target.files == (store_dir / "compose.yaml", store_dir / "compose.override.yaml")
    assert (target.project, target.service, target.override) == ("nightly-demo", "sglang", None)
    assert not (tmp_path / "scratch").exists()  # nothing rendered
    assert composed(store_dir, None, "mine", tmp_path).project == "mine"


def test_an_unnamed_base_runs_under_the_recipes_name(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out", base="services: {sglang: {image: x}}\n", recipe="qwen")
    assert composed(store_dir, None, None, tmp_path).project == "qwen"
    empty = overlay(tmp_path / "out2", base="", recipe="empty")
    assert composed(empty, None, None, tmp_path).project == "empty"


def test_reached_through_a_link_the_store_directory_is_what_runs(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    target = composed(tmp_path / "out" / "demo" / "latest", None, None, tmp_path)
    assert target.overlay == store_dir
    assert target.files[0] == store_dir / "compose.yaml"


def test_the_users_service_gets_the_pin_the_mounts_and_their_command_extended(
    tmp_path: Path,
) -> None:
    store_dir = overlay(tmp_path / "out")
    file = user_file(tmp_path / "My Project!")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = composed(store_dir, UserCompose(file, "qwen"), None, scratch)
    assert target.override is not None
    rendered = (
        scratch / f"{hashlib.sha256(target.override.encode()).hexdigest()[:16]}.override.yaml"
    )
    assert target.files == (file, rendered)
    assert rendered.read_text() == target.override
    assert (target.project, target.service, target.overlay) == ("myproject", "qwen", store_dir)
    assert target.lock == read_lock(store_dir)
    assert load(target.override) == {
        "services": {
            "qwen": {
                "image": PINNED,
                "command": ["serve", "--port", "30000", "--chat-template", TEMPLATE_PATH],
                "volumes": [
                    {
                        "type": "bind",
                        "source": str(store_dir / "rootfs/src/a.py"),
                        "target": "/src/a.py",
                        "read_only": True,
                    },
                    {
                        "type": "bind",
                        "source": str(store_dir / "rootfs/src/b.py"),
                        "target": "/src/b.py",
                        "read_only": True,
                    },
                    {
                        "type": "bind",
                        "source": str(store_dir / "chat_template.jinja"),
                        "target": TEMPLATE_PATH,
                        "read_only": True,
                    },
                ],
            }
        }
    }
    assert composed(store_dir, UserCompose(file, "qwen"), "given", scratch).project == "given"


def test_without_a_template_their_command_is_left_to_them(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out", template=None)
    file = user_file(tmp_path / "p", command="null")  # no command needed then
    override = adopted_override(read_lock(store_dir), store_dir, file, "qwen")
    spec = override["services"]["qwen"]
    assert list(spec) == ["image", "volumes"]
    assert [v["target"] for v in spec["volumes"]] == ["/src/a.py", "/src/b.py"]


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (
            "'serve --model-path \"/m x\" --port 1'",
            ["serve", "--model-path", "/m x", "--port", "1"],
        ),
        ("[serve, --port, 1, --tp, 2.5]", ["serve", "--port", "1", "--tp", "2.5"]),
        ("[]", []),
    ],
)
def test_their_command_in_either_compose_spelling(
    tmp_path: Path, command: str, argv: list[str]
) -> None:
    file = user_file(tmp_path, command)
    spec = load(file.read_text())["services"]["qwen"]
    assert user_command(file, spec, "qwen") == argv


def test_a_service_without_a_command_cannot_take_the_template(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    file = user_file(tmp_path / "p", command="null")
    with pytest.raises(ConfigError) as refused:
        adopted_override(read_lock(store_dir), store_dir, file, "qwen")
    assert str(refused.value) == (
        f"{file}: service 'qwen' has no command; the chat template needs one to extend"
    )


@pytest.mark.parametrize(
    "text", ["services: {other: {image: x}}\n", "services: {qwen: [a]}\n", "services:\n", ""]
)
def test_a_service_the_file_does_not_have_is_named(tmp_path: Path, text: str) -> None:
    store_dir = overlay(tmp_path / "out")
    file = tmp_path / "compose.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as refused:
        composed(store_dir, UserCompose(file, "qwen"), None, tmp_path)
    assert str(refused.value) == f"{file}: no service 'qwen'"


def test_the_project_is_the_one_compose_gives_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_dir = overlay(tmp_path / "out")
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)

    def project(directory: str, name: str = "") -> str:
        file = user_file(tmp_path / directory)
        if name:
            file.write_text(f"name: {name}\n" + file.read_text())
        return composed(store_dir, UserCompose(file, "qwen"), None, tmp_path).project

    assert project("Web_App-2.0 (prod)") == "web_app-20prod"
    assert project("anything", name="their-project") == "their-project"
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "from-env")
    assert project("other") == "from-env"
    assert project("again", name="their-project") == "from-env"  # Compose: env before name:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME")
    assert project("_Lead") == "lead"  # the leading `_` Compose strips
    with pytest.raises(ConfigError) as refused:
        project("...!")
    assert "compose.yaml: cannot tell its compose project; give --project" in str(refused.value)
    assert str(tmp_path / "...!") in str(refused.value)


def test_the_links_of_a_store_directory_are_its_recipes(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out", recipe="qwen")
    assert links_of(store_dir) == tmp_path / "out" / "qwen"
    elsewhere = tmp_path / "copied"
    store_dir.rename(elsewhere)
    with pytest.raises(ConfigError) as refused:
        links_of(elsewhere)
    assert str(refused.value) == f"{elsewhere}: not an overlay in a store (<out>/{STORE}/<dir>)"


def test_the_running_override_is_kept_beside_the_links_only_when_rendered(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    links = tmp_path / "out" / "demo"
    record_override(links, composed(store_dir, None, None, tmp_path))
    assert sorted(p.name for p in links.iterdir()) == ["latest", "nightly-1"]
    running = composed(store_dir, UserCompose(user_file(tmp_path / "p"), "qwen"), None, tmp_path)
    record_override(links, running)
    assert (links / "qwen.override.yaml").read_text() == running.override


ADOPTING = """\
name: adopting
services:
  qwen:
    image: example/sglang:nightly
    command: [serve]
    volumes:
      - ./models:/models
      - ./hand-a.py:/src/a.py:ro
      - {type: bind, source: ./hand-c.py, target: /src/c.py, read_only: true}
"""


def test_an_adopted_mount_is_replaced_by_the_overlays_file_or_removed(
    tmp_path: Path, compose: Compose
) -> None:
    store_dir = overlay(tmp_path / "out")
    home = tmp_path / "user"
    home.mkdir()
    file = home / "compose.yaml"
    file.write_text(ADOPTING)
    user = UserCompose(file, "qwen", ("/src/a.py", "/src/c.py"))
    target = composed(store_dir, user, None, tmp_path)
    assert target.override is not None and "volumes: !override" in target.override
    model = compose.config(target.files)
    mounts = {
        v["target"] if isinstance(v, dict) else v.split(":")[1]: v
        for v in model["services"]["qwen"]["volumes"]
    }

    def source(volume: Any) -> str:
        return str(volume["source"] if isinstance(volume, dict) else volume.split(":")[0])

    assert source(mounts["/src/a.py"]) == str(store_dir / "rootfs/src/a.py")  # replaced
    assert "/src/c.py" not in mounts  # the nightly has the fix: the image's own file
    assert source(mounts["/models"]) == str(home / "models")  # theirs, kept
    assert source(mounts["/src/b.py"]) == str(store_dir / "rootfs/src/b.py")


def test_an_override_restates_nothing_when_the_overlay_covers_every_adopted_mount(
    tmp_path: Path,
) -> None:
    store_dir = overlay(tmp_path / "out")
    file = user_file(tmp_path / "user")
    lock = read_lock(store_dir)
    override = adopted_override(lock, store_dir, file, "qwen", ("/src/a.py",))
    volumes = override["services"]["qwen"]["volumes"]
    assert [v["target"] for v in volumes] == ["/src/a.py", "/src/b.py", TEMPLATE_PATH]
    assert "!override" not in dump(override)
