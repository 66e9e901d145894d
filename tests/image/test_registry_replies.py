"""Registry replies of the wrong shape (JSON that parses, but not as the API says) are clear
errors naming the endpoint and the field: exit 2, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkeeper.errors import ImageError, UnreachableError, UnsafeInputError
from patchkeeper.image.manifests import choose_platform, image_parts
from patchkeeper.image.model import ImageRef
from patchkeeper.image.registry import RegistrySource
from patchkeeper.image.registry_client import RegistryClient, TagList, TokenReply, _reply
from tests.oci import Image, Reply, ScriptedRegistry, canonical_json, layer, tree

Scripted = Callable[[], ScriptedRegistry]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "tags": JSON,
        "token": JSON,
        "access_token": JSON,
        "config": JSON,
        "layers": JSON,
        "manifests": st.lists(
            st.fixed_dictionaries({}, optional={"platform": JSON, "digest": JSON, "size": JSON}),
            max_size=3,
        ),
    },
)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"tags": "abc"}', "tags"),
        (b'{"tags": ["ok", 5]}', "tags.1"),
        (b"[]", "the reply"),
        (b"5", "the reply"),
        (b"not json", "the reply"),
    ],
)
def test_a_tag_list_of_the_wrong_shape_names_the_page_and_field(
    scripted_registry: Scripted, body: bytes, field: str
) -> None:
    server = scripted_registry()
    server.routes["/v2/r/tags/list"] = Reply(body=body)
    with pytest.raises(
        ImageError, match=rf"/v2/r/tags/list\?n=1000: unexpected reply: {field}:"
    ) as err:
        RegistryClient(server.host).tags("r")
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"token": 5}', "token"),
        (b'{"token": ["a"]}', "token"),
        (b'["tok"]', "the reply"),
        (b"<html>", "the reply"),
    ],
)
def test_a_token_reply_of_the_wrong_shape_names_the_token_service(
    scripted_registry: Scripted, body: bytes, field: str
) -> None:
    server = scripted_registry()
    challenge = f'Bearer realm="http://{server.host}/token",service="s"'
    server.routes["/v2/r/tags/list"] = Reply(401, headers={"WWW-Authenticate": challenge})
    server.routes["/token"] = Reply(body=body)
    with pytest.raises(
        ImageError, match=rf"token service http://{server.host}/token: unexpected reply: {field}:"
    ):
        RegistryClient(server.host).tags("r")


def test_a_huge_token_reply_is_refused_at_its_cap(scripted_registry: Scripted) -> None:
    server = scripted_registry()
    challenge = f'Bearer realm="http://{server.host}/token"'
    server.routes["/v2/r/tags/list"] = Reply(401, headers={"WWW-Authenticate": challenge})
    server.routes["/token"] = Reply(body=b'{"token": "' + b"t" * (2 << 20) + b'"}')
    with pytest.raises(UnsafeInputError, match=r"token reply of .* bytes, over the 1048576 limit"):
        RegistryClient(server.host).tags("r")


@pytest.mark.parametrize("realm", ["http://[bad", "nothing"])
def test_a_challenge_realm_that_is_no_url_is_refused(
    scripted_registry: Scripted, realm: str
) -> None:
    server = scripted_registry()
    server.routes["/v2/r/tags/list"] = Reply(
        401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'}
    )
    with pytest.raises((ImageError, UnreachableError), match=r"realm|token service") as err:
        RegistryClient(server.host).tags("r")
    assert err.value.exit_code in (2, 3)


def test_a_token_reply_with_no_token_says_so(scripted_registry: Scripted) -> None:
    server = scripted_registry()
    challenge = f'Bearer realm="http://{server.host}/token"'
    server.routes["/v2/r/tags/list"] = Reply(401, headers={"WWW-Authenticate": challenge})
    server.routes["/token"] = Reply(body=b'{"expires_in": 60}')
    with pytest.raises(ImageError, match="sent no token"):
        RegistryClient(server.host).tags("r")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": "sha256:x"}, "config has no sha256 digest"),
        ({"layers": "abc"}, "'layers' is not a list"),
        ({"layers": [5]}, r"layers\[0\] has no sha256 digest"),
        ({"layers": [{"digest": "sha256:" + "a" * 64, "size": "9"}]}, r"layers\[0\] has size '9'"),
    ],
)
def test_a_manifest_of_the_wrong_shape_names_the_image_and_field(
    scripted_registry: Scripted, change: dict[str, Any], message: str
) -> None:
    image = Image([layer(tree({"/f": "x"}))])
    server = scripted_registry()
    server.serve("r", "1", image)
    server.routes["/v2/r/manifests/1"] = Reply(body=canonical_json({**image.manifest, **change}))
    with pytest.raises(
        ImageError, match=rf"registry {server.host}: image .*r:1: malformed manifest: {message}"
    ):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))


@pytest.mark.parametrize("platform", ["linux/amd64", {"os": ["linux"]}, {"architecture": 64}])
def test_an_index_whose_platforms_are_not_strings_is_refused(
    scripted_registry: Scripted, platform: Any
) -> None:
    server = scripted_registry()
    entry = {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 1, "platform": platform}
    body = canonical_json(
        {"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    )
    server.routes["/v2/r/manifests/1"] = Reply(body=body)
    with pytest.raises(ImageError, match=r"malformed index: manifests\[0\].platform"):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))


@settings(max_examples=200, deadline=None)
@given(SHAPED)
def test_any_json_reply_parses_or_is_a_clear_error(body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    for model in (TagList, TokenReply):
        try:
            _reply(model, data, "endpoint")
        except ImageError as err:
            assert str(err).startswith("endpoint: unexpected reply: ")
    for parse in (
        lambda: image_parts(body, "where"),
        lambda: choose_platform(body, "linux/amd64", "where"),
    ):
        try:
            parse()
        except ImageError as err:
            assert str(err).startswith("where: ")


@pytest.mark.parametrize(
    ("body", "message"), [(b"{not json", r"not JSON: "), (b"[1, 2]", "not a JSON object")]
)
def test_a_manifest_that_is_not_a_json_object_names_the_registry_and_reference(
    scripted_registry: Scripted, body: bytes, message: str
) -> None:
    server = scripted_registry()
    server.routes["/v2/r/manifests/1"] = Reply(body=body)
    with pytest.raises(
        ImageError, match=rf"registry {server.host}: r 1: malformed manifest \({message}"
    ):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))
