"""Where `up` smoke-tests a service (the published port of Compose's model of it), and
which service, compose file and project `up` and `down` drive."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkeeper.config.models import Recipe
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.overlay.driver import (
    project_for,
    published_ports,
    service_model,
    service_of,
    smoke_url,
    user_of,
)
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.service import Composed, UserCompose
from tests.compose_fixtures import installed
from tests.overlay.locks import PINNED, overlay

ports = st.integers(1, 65535)
hosts = st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "192.168.7.2", "::1"])


def entry(host: str, published: int, target: int, long: bool) -> Any:
    if long:
        return {"mode": "ingress", "host_ip": host, "target": target, "published": str(published)}
    where = f"[{host}]" if ":" in host else host
    return f"{where}:{published}:{target}/tcp" if host else f"{published}:{target}"


@settings(max_examples=150, deadline=None)
@given(
    host=hosts,
    published=ports,
    target=ports,
    others=st.lists(st.tuples(hosts, ports, ports), max_size=3),
    long=st.booleans(),
)
def test_the_published_port_of_the_services_own_port_wins(
    host: str, published: int, target: int, others: list[tuple[str, int, int]], long: bool
) -> None:
    decoys = [entry(h, p, t, long) for h, p, t in others if t != target]
    spec = {
        "command": ["serve", "--port", str(target)],
        "ports": [*decoys, entry(host, published, target, long)],
    }
    reached = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    reached = f"[{reached}]" if ":" in reached else reached
    assert smoke_url("sglang", spec, None) == f"http://{reached}:{published}"


@settings(max_examples=150, deadline=None)
@given(
    spec=st.dictionaries(
        st.sampled_from(["command", "ports"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=12),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ),
    )
)
def test_any_model_gives_a_url_or_a_clear_error(spec: dict[str, Any]) -> None:
    try:
        url = smoke_url("sglang", spec, None)
    except ConfigError as err:
        assert "give --url for the smoke checks" in str(err)
    else:
        assert url.startswith("http://")


def test_without_ports_the_commands_port_on_this_host_then_a_clear_error() -> None:
    assert smoke_url("s", {"command": ["x", "--port=8072"]}, None) == "http://127.0.0.1:8072"
    assert smoke_url("s", {}, "http://h:1/") == "http://h:1"
    with pytest.raises(ConfigError) as refused:
        smoke_url("s", {"command": ["x"]}, None)
    assert "cannot tell service s's port" in str(refused.value)


def test_published_ports_in_either_syntax() -> None:
    spec = {
        "ports": [
            {"target": 30000, "published": "8080", "host_ip": "[::1]", "protocol": "tcp"},
            {"target": 80, "published": "9000-9005"},
            {"target": 81},  # not published
            "127.0.0.1:7000:7001/udp",
            "[::1]:7002:7003",
            "7004:7005",
            "7006",  # a bare container port: not published
            "a:b",
            "x:1-2:3",
        ]
    }
    assert published_ports(spec) == [
        ("::1", 8080, 30000),
        ("", 9000, 80),
        ("127.0.0.1", 7000, 7001),
        ("::1", 7002, 7003),
        ("", 7004, 7005),
        ("x", 1, 3),
    ]
    assert published_ports({"ports": "8000:8000"}) == []
    assert published_ports({}) == []


def test_the_smoke_url_takes_the_first_published_port_without_a_port_flag() -> None:
    spec = {"command": "serve --port 30000", "ports": ["[fe80::1]:81:8000", "82:30000"]}
    assert smoke_url("s", spec, None) == "http://[fe80::1]:81"
    spec = {"command": ["serve", "--port", "x"], "ports": ["0.0.0.0:81:8000", "82:30000"]}
    assert smoke_url("s", spec, None) == "http://127.0.0.1:81"
    spec = {"command": ["serve", "--port", "9"], "ports": ["81:8000", "82:8001"]}
    assert smoke_url("s", spec, None) == "http://127.0.0.1:81"  # its port is not published


def target(store_dir: Path, service: str = "sglang") -> Composed:
    files = (store_dir / "compose.yaml", store_dir / "compose.override.yaml")
    return Composed(store_dir, read_lock(store_dir), files, "demo", service)


@pytest.mark.parametrize(
    "model", [{}, {"services": None}, {"services": {"sglang": ["a"]}}, {"services": {"x": {}}}]
)
def test_a_service_the_model_lacks_is_named_with_the_file(tmp_path: Path, model: Any) -> None:
    store_dir = overlay(tmp_path / "out")
    with pytest.raises(ConfigError) as refused:
        service_of(model, target(store_dir))
    assert str(refused.value) == f"{store_dir / 'compose.yaml'}: no service 'sglang'"
    assert refused.value.exit_code == 2


def test_the_service_as_compose_resolves_the_files_up_runs(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    spec = service_model(installed(2), target(store_dir))
    assert spec["image"] == PINNED  # the override's pin over the base's tag
    assert service_of({"services": {"sglang": spec}}, target(store_dir)) is spec
    with pytest.raises(ConfigError) as refused:
        service_model(installed(2), target(store_dir, "router"))
    assert str(refused.value) == f"{store_dir / 'compose.yaml'}: no service 'router'"


def recipe(tmp_path: Path, **service: Any) -> Recipe:
    body = {
        "name": "web",
        "image": "example/sglang",
        "tags": r"^(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$",
        "patchsets": ["p.yaml"],
        "service": {"name": "qwen", "model": {"path": "/models/m"}, **service},
        "path": tmp_path / "recipes" / "web.yaml",
    }
    return Recipe.model_validate(body)


def test_the_compose_file_a_recipe_adopted_unless_one_is_given(tmp_path: Path) -> None:
    adopting = recipe(tmp_path, compose_file="../app/compose.yaml", adopted=["/src/a.py"])
    assert adopting.service.adopted == (PurePosixPath("/src/a.py"),)
    assert user_of(adopting, None) == UserCompose(
        (tmp_path / "app" / "compose.yaml").resolve(), "qwen", ("/src/a.py",)
    )
    given = UserCompose(tmp_path / "mine.yaml", "sglang")
    assert user_of(adopting, given) is given
    assert user_of(recipe(tmp_path), None) is None
    assert user_of(recipe(tmp_path), given) is given


def test_the_project_given_else_the_one_compose_v2_derives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    file = tmp_path / "My App" / "compose.yaml"
    file.parent.mkdir()
    file.write_text("services: {qwen: {image: busybox}}\n")
    user = UserCompose(file, "qwen")
    v2, v1 = installed(2), Compose(("docker-compose",), 1)
    assert project_for(v2, user, None) == "myapp"
    assert project_for(v2, user, "given") == "given"
    assert project_for(v2, None, None) is None
    assert project_for(v1, user, None) is None  # v1 derives none patchkeeper can ask for
    assert project_for(v1, user, "given") == "given"
