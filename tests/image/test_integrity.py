"""Registries, layouts and layers are untrusted: each hole here was reproduced once.

Against the real registry where it can serve the case, else against a loopback
`ScriptedRegistry` that answers what a hostile or broken registry would.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.errors import ConfigError, ImageError, UnreachableError, UnsafeInputError
from patchkeeper.image import layers as layer_reader
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.identity import identify
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef
from patchkeeper.image.registry import RegistrySource
from patchkeeper.image.registry_client import RegistryClient
from tests.names import unique
from tests.oci import (
    Entry,
    Image,
    Layer,
    Reply,
    ScriptedRegistry,
    SeenRequest,
    canonical_json,
    layer,
    push,
    tree,
    write_oci_layout,
)

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
P = PurePosixPath
ROOT = "/sgl-workspace/sglang"
SERVING = P(f"{ROOT}/python/sglang/srt/entrypoints/anthropic/serving.py")
SHA = "0123456789abcdef0123456789abcdef01234567"
Scripted = Callable[[], ScriptedRegistry]


def checkout(serving: str) -> Layer:
    return layer(
        tree(
            {
                f"{ROOT}/.git/HEAD": "ref: refs/heads/main\n",
                f"{ROOT}/.git/refs/heads/main": f"{SHA}\n",
                str(SERVING): serving,
                "/usr/lib/tail.so": "after every requested path\n",  # reads stop before it
            }
        )
    )


def test_a_tampered_layout_never_poisons_the_registry_read(tmp_path: Path) -> None:
    genuine = Image([checkout("genuine\n")])
    repository = unique("pk-test/poison")
    push(REGISTRY, repository, "1", genuine)
    layout = write_oci_layout(tmp_path / "layout", genuine, "1")
    blob = layout / "blobs/sha256" / genuine.layers[0].digest.removeprefix("sha256:")
    blob.write_bytes(checkout("evil\n").blob)

    tampered = CachedSource(LayoutSource(layout))  # as the CLI wraps every source
    image = tampered.resolve(ImageRef("any", "1"))
    assert image.image_id == genuine.config_digest  # the config is the genuine one
    tampered.read(image, [SERVING])  # a partial read: unverifiable, so never kept

    registry = CachedSource(RegistrySource())
    found = registry.read(registry.resolve(ImageRef(f"{REGISTRY}/{repository}", "1")), [SERVING])
    assert found[SERVING] is not None and found[SERVING].content == b"genuine\n"


def test_a_fully_read_layer_must_match_its_digest_and_nothing_is_kept(
    tmp_path: Path, private_cache: Path
) -> None:
    genuine = Image([checkout("genuine\n")])
    layout = write_oci_layout(tmp_path / "layout", genuine, "1")
    blob = layout / "blobs/sha256" / genuine.layers[0].digest.removeprefix("sha256:")
    blob.write_bytes(checkout("evil\n").blob)
    source = LayoutSource(layout)
    image = source.resolve(ImageRef("any", "1"))
    with pytest.raises(ImageError, match="does not match") as caught:
        source.read(image, [P("/zzz/after-everything")])  # read to the end
    assert caught.value.exit_code == 2
    assert list((private_cache / "layers" / "verified").iterdir()) == []


def test_a_registry_serving_other_bytes_for_a_layer_is_refused(
    scripted_registry: Scripted, private_cache: Path
) -> None:
    image = Image([checkout("genuine\n")])
    server = scripted_registry()
    server.serve("r", "1", image)
    server.routes[f"/v2/r/blobs/{image.layers[0].digest}"] = Reply(body=checkout("evil\n").blob)
    source = RegistrySource()
    resolved = source.resolve(ImageRef(f"{server.host}/r", "1"))
    with pytest.raises(ImageError, match="does not match"):
        source.read(resolved, [P("/zzz")])
    assert list((private_cache / "layers" / "verified").iterdir()) == []


def test_a_manifest_digest_that_is_a_path_is_never_used_as_one(
    scripted_registry: Scripted, tmp_path: Path
) -> None:
    target = tmp_path / "owned"
    payload = layer(tree({"/f": "x"}))
    hostile = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {},
        "layers": [{"mediaType": payload.media_type, "digest": str(target), "size": payload.size}],
    }
    image = Image([payload])
    hostile["config"] = image.manifest["config"]
    server = scripted_registry()
    server.serve("r", "1", image)
    server.routes["/v2/r/manifests/1"] = Reply(body=canonical_json(hostile))
    server.routes[f"/v2/r/blobs/{target}"] = Reply(body=payload.blob)
    server.routes[f"/v2/r/blobs//{str(target).lstrip('/')}"] = Reply(body=payload.blob)
    source = RegistrySource()
    with pytest.raises(ImageError, match="malformed"):
        source.read(source.resolve(ImageRef(f"{server.host}/r", "1")), [P("/f")])
    assert not list(tmp_path.glob("owned*"))


def test_a_tarball_diff_id_that_is_a_path_is_never_used_as_one(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    payload = layer(tree({"/f": "x"}), compression="none")
    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": [str(target)]}})
    members = {
        "manifest.json": json.dumps(
            [{"Config": "c.json", "RepoTags": ["x/y:1"], "Layers": ["l/layer.tar"]}]
        ).encode(),
        "c.json": config,
        "l/layer.tar": payload.tar,
    }
    archive = tmp_path / "saved.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = LayoutSource(archive)
    with pytest.raises(ImageError, match="malformed"):
        source.read(source.resolve(ImageRef.parse("x/y:1")), [P("/f")])
    assert not list(tmp_path.glob("owned*"))


def test_absolute_member_names_are_refused() -> None:
    repository = unique("pk-test/absolute")
    push(REGISTRY, repository, "1", Image([layer([Entry.file("/etc/passwd", "owned")])]))
    source = RegistrySource()
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    with pytest.raises(UnsafeInputError, match="escapes the image root"):
        source.read(image, [P("/etc/passwd")])


def test_credentials_never_follow_a_tags_link_to_another_host(
    scripted_registry: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_USERNAME", "patch")
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_PASSWORD", "keeper-secret")
    registry, elsewhere = scripted_registry(), scripted_registry()
    link = f'<http://{elsewhere.host}/v2/r/tags/list?last=a>; rel="next"'

    def page(request: SeenRequest) -> Reply:
        if "Authorization" not in request.headers:
            return Reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        return Reply(body=b'{"tags": ["a"]}', headers={"Link": link})

    registry.routes["/v2/r/tags/list"] = page
    elsewhere.routes["/v2/r/tags/list"] = Reply(body=b'{"tags": ["b"]}')
    with pytest.raises(ImageError, match="another host"):
        RegistryClient(registry.host).tags("r")
    assert registry.requests[-1].headers["Authorization"].startswith("Basic ")
    assert all("Authorization" not in r.headers for r in elsewhere.requests)


def test_a_tags_link_that_loops_is_refused(scripted_registry: Scripted) -> None:
    server = scripted_registry()
    page = "/v2/r/tags/list?n=1000"

    def looping(request: SeenRequest) -> Reply:  # ends after 50 pages, for a client that loops
        link = {"Link": f'<{page}>; rel="next"'} if len(server.requests) < 50 else {}
        return Reply(body=b'{"tags": ["a"]}', headers=link)

    server.routes[page] = looping
    with pytest.raises(ImageError, match="loop"):
        RegistryClient(server.host).tags("r")
    assert len(server.requests) == 1


def test_a_drip_fed_blob_is_abandoned_at_the_low_speed_limit(
    scripted_registry: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below 1000 bytes/s for 1 s: abandoned, long before any deadline (left at defaults).
    monkeypatch.setenv("PATCHKEEPER_LOW_SPEED_TIME", "1")
    image = Image([layer(tree({"/f": os.urandom(600)}))])
    server = scripted_registry()
    server.serve("r", "1", image)
    blob = f"/v2/r/blobs/{image.layers[0].digest}"
    server.routes[blob] = Reply(body=image.layers[0].blob, drip=0.05)
    source = RegistrySource()
    resolved = source.resolve(ImageRef(f"{server.host}/r", "1"))
    with pytest.raises(
        UnreachableError, match="too slow, less than 1000 bytes/s for 1 s"
    ) as caught:
        source.read(resolved, [P("/f")])
    assert caught.value.exit_code == 3


def test_a_drip_fed_manifest_is_abandoned_at_the_low_speed_limit(
    scripted_registry: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKEEPER_LOW_SPEED_LIMIT", "50")
    monkeypatch.setenv("PATCHKEEPER_LOW_SPEED_TIME", "1")
    image = Image([layer(tree({"/f": "x"}))])
    server = scripted_registry()
    server.serve("r", "1", image)
    server.routes["/v2/r/manifests/1"] = Reply(body=image.manifest_blob, drip=0.1)
    with pytest.raises(UnreachableError, match="manifests/1: too slow, less than 50 bytes/s"):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))


@pytest.mark.parametrize("value", ["0", "-5", "fast", "1.5"])
def test_bad_low_speed_settings_are_bad_input(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PATCHKEEPER_LOW_SPEED_TIME", value)
    with pytest.raises(ConfigError, match="PATCHKEEPER_LOW_SPEED_TIME") as caught:
        RegistrySource()
    assert caught.value.exit_code == 2


def test_a_silent_registry_fails_at_the_overall_deadline(
    scripted_registry: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_TIMEOUT", "1")
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_DEADLINE", "2")
    server = scripted_registry()
    server.routes["/v2/r/manifests/1"] = Reply(silent=True)
    with pytest.raises(UnreachableError, match=r"deadline|timed out"):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))
    assert len(server.requests) < 5  # the overall deadline cut the retries short


def test_bad_deadline_settings_are_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_DEADLINE", "soon")
    with pytest.raises(ImageError, match="PATCHKEEPER_REGISTRY_DEADLINE"):
        RegistrySource()


@pytest.mark.parametrize("what", ["manifest", "config"])
def test_oversized_manifests_and_configs_are_refused(
    scripted_registry: Scripted, what: str
) -> None:
    huge = b'{"pad": "' + b"x" * (17 << 20) + b'"}'
    image = Image([layer(tree({"/f": "x"}))], extra_config={"Pad": "x" * (17 << 20)})
    server = scripted_registry()
    server.serve("r", "1", image)
    if what == "manifest":
        server.routes["/v2/r/manifests/1"] = Reply(body=huge)
    with pytest.raises(UnsafeInputError, match="limit"):
        RegistrySource().resolve(ImageRef(f"{server.host}/r", "1"))


def test_a_decompression_bomb_stops_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layer_reader, "MIN_EXPANSION_CAP", 16 << 20)
    bomb = layer([Entry.file("a/zeros", bytes(96 << 20)), Entry.file("b", "after")], "zstd")
    assert bomb.size < 1 << 20
    repository = unique("pk-test/bomb")
    push(REGISTRY, repository, "1", Image([bomb]))
    source = RegistrySource()
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    with pytest.raises(UnsafeInputError, match="decompresses past"):
        source.read(image, [P("/b")])


def test_labels_are_printable() -> None:
    escape = "\x1b]0;owned\x07\x1b[2J"
    labels = {"org.opencontainers.image.revision": f"{escape}feedface", "note": escape}
    repository = unique("pk-test/labels")
    push(REGISTRY, repository, "1", Image([checkout("x\n")], labels=labels))
    source = RegistrySource()
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    identity = identify(source, image, P(ROOT))
    shown = [*image.labels.values(), *image.labels, *identity.warnings]
    assert identity.warnings and all("\x1b" not in t and "\x07" not in t for t in shown)
    assert image.labels["note"] == "\\x1b]0;owned\\x07\\x1b[2J"
