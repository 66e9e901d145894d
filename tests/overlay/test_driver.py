"""Where `up` smoke-tests a service: the published port of Compose's model of it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkeeper.errors import ConfigError
from patchkeeper.overlay.driver import smoke_url

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
