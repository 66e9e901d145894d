"""Reading images straight from a real registry: whiteouts, early stop, auth, retries."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from patchkeeper.errors import ImageError, UnreachableError, UnsafeInputError
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.identity import identify
from patchkeeper.image.model import ImageRef
from patchkeeper.image.registry import RegistrySource
from patchkeeper.image.registry_access import split_repository
from patchkeeper.image.registry_client import RegistryClient
from tests.names import unique
from tests.oci import Entry, Image, index, layer, opaque, push, tree, whiteout

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
P = PurePosixPath
ROOT = "/sgl-workspace/sglang"
SHA = "0123456789abcdef0123456789abcdef01234567"


def noise(size: int, seed: int) -> bytes:
    """Incompressible bytes, so layer sizes are real."""
    return (seed.to_bytes(4, "big") + os.urandom(size))[:size]


def nightly_shaped(base_mb: int = 3, upper_mb: int = 1) -> Image:
    """A big base, the checkout layer with .git, and large layers above it."""
    base = layer(tree({"/usr/local/cuda/lib/libhuge.so": noise(base_mb << 20, 1)}))
    checkout = layer(
        tree(
            {
                f"{ROOT}/.git/HEAD": "ref: refs/heads/main\n",
                f"{ROOT}/.git/refs/heads/main": f"{SHA}\n",
                f"{ROOT}/python/sglang/srt/entrypoints/anthropic/serving.py": "vanilla\n",
            }
        )
    )
    pip = layer(tree({"/usr/lib/python3/site-packages/big.bin": noise(upper_mb << 20, 2)}))
    tweak = layer(
        tree({f"{ROOT}/python/sglang/version.py": "0.5.13\n", "/opt/x": noise(upper_mb << 20, 3)})
    )
    return Image([base, checkout, pip, tweak], labels={"org.opencontainers.image.revision": SHA})


def test_split_repository_like_docker() -> None:
    assert split_repository("lmsysorg/sglang") == ("registry-1.docker.io", "lmsysorg/sglang")
    assert split_repository("ubuntu") == ("registry-1.docker.io", "library/ubuntu")
    assert split_repository("127.0.0.1:5000/a/b") == ("127.0.0.1:5000", "a/b")
    assert split_repository("ghcr.io/o/r") == ("ghcr.io", "o/r")


def test_top_most_wins_and_whiteouts_and_opaque_dirs_hide_lower_layers() -> None:
    bottom = layer(
        tree({"/etc/a": "v0", "/gone.txt": "x", "/gone-dir/f": "x", "/opq/old": "o", "/keep": "k"})
    )
    middle = layer(
        [
            *tree({"/etc/a": "v1", "/opq/new": "n"}),
            whiteout("/gone.txt"),
            whiteout("/gone-dir"),
            opaque("/opq"),
        ]
    )
    top = layer(tree({"/etc/b": "b"}), compression="zstd")
    repository = unique("pk-test/layers")
    push(REGISTRY, repository, "1", Image([bottom, middle, top]))
    source = RegistrySource()
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    wanted = ["/etc/a", "/gone.txt", "/gone-dir/f", "/opq/old", "/opq/new", "/keep", "/etc/b"]
    found = source.read(image, [P(p) for p in wanted])
    contents = {str(k): (v.content if v else None) for k, v in found.items()}
    assert contents == {
        "/etc/a": b"v1",
        "/gone.txt": None,
        "/gone-dir/f": None,
        "/opq/old": None,
        "/opq/new": b"n",
        "/keep": b"k",
        "/etc/b": b"b",
    }


def test_extraction_stops_early_and_a_warm_cache_fetches_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image_def = nightly_shaped()
    repository = unique("pk-test/nightly")
    push(REGISTRY, repository, "nightly-dev-cu13-20260621-01234567", image_def)
    ref = ImageRef(f"{REGISTRY}/{repository}", "nightly-dev-cu13-20260621-01234567")
    source = CachedSource(RegistrySource(), tmp_path)
    image = source.resolve(ref)
    assert image.image_id == image_def.config_digest and image.digest == image_def.digest
    serving = P(f"{ROOT}/python/sglang/srt/entrypoints/anthropic/serving.py")
    added = P(f"{ROOT}/python/sglang/srt/entrypoints/anthropic/new_module.py")
    wanted = [serving, added, P(f"{ROOT}/python/sglang/version.py")]
    found = source.read(image, wanted, [P(ROOT) / ".git"])  # as sync does
    assert identify(source, image, P(ROOT), files=found).commit == SHA
    assert found[serving] is not None and found[serving].content == b"vanilla\n"
    assert found[added] is None  # absent, decided without reading the base layer
    accounting = source.accounting()
    per_layer = {entry["digest"]: entry["fetched"] for entry in accounting["layers"]}
    base = image_def.layers[0]
    assert per_layer[base.digest] == 0
    assert accounting["fetched_bytes"] <= accounting["image_bytes"] - base.size

    warm = RegistrySource()
    again = warm.read(warm.resolve(ref), [serving, added])
    assert again[serving] == found[serving] and again[added] is None
    assert warm.accounting()["fetched_bytes"] == 0

    with caplog.at_level(logging.INFO, logger="patchkeeper"):  # what -v shows
        cached = CachedSource(RegistrySource(), tmp_path)
        assert cached.read(cached.resolve(ref), wanted, [P(ROOT) / ".git"]) == found
    logged = [r.getMessage() for r in caplog.records]
    assert f"file cache: 3 of 3 file(s) and 1 of 1 git dir(s) of {ref} were cached" in logged
    assert any(
        re.fullmatch(rf"GET {REGISTRY}/v2/{repository}/manifests/\S+ -> 200", m) for m in logged
    )


def test_hostile_layers_are_refused_or_contained() -> None:
    slip = layer([Entry.file("../../etc/passwd", "owned")])
    repository = unique("pk-test/slip")
    push(REGISTRY, repository, "1", Image([slip]))
    source = RegistrySource()
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    with pytest.raises(UnsafeInputError, match="escapes the image root"):
        source.read(image, [P("/etc/passwd")])

    links = layer(  # in path order, as builders write layers: a link after its target
        [
            Entry.dir("app"),
            Entry.symlink("app/abs", "/etc/shadow"),
            Entry.chardev("app/dev", 1, 3),
            Entry.symlink("app/escape", "../../../../etc/shadow"),
            Entry.file("app/hard", "image's own"),
            Entry.dir("etc"),
            Entry.hardlink("etc/shadow", "app/hard"),
        ]
    )
    repository = unique("pk-test/links")
    push(REGISTRY, repository, "1", Image([links]))
    image = source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1"))
    found = source.read(image, [P("/app/escape"), P("/app/abs"), P("/app/hard")])
    assert {str(k): v.content for k, v in found.items() if v} == {
        "/app/escape": b"image's own",
        "/app/abs": b"image's own",
        "/app/hard": b"image's own",
    }
    with pytest.raises(UnsafeInputError, match="device"):
        source.read(image, [P("/app/dev")])


def test_a_multi_platform_index_resolves_to_the_asked_platform() -> None:
    amd = Image([layer(tree({"/arch": "amd64"}))])
    arm = Image([layer(tree({"/arch": "arm64"}))])
    repository = unique("pk-test/multi")
    push(REGISTRY, repository, "1", index({"linux/amd64": amd, "linux/arm64": arm}))
    ref = ImageRef(f"{REGISTRY}/{repository}", "1")
    for platform, expected in (("linux/amd64", b"amd64"), ("linux/arm64", b"arm64")):
        source = RegistrySource(platform)
        file = source.read(source.resolve(ref), [P("/arch")])[P("/arch")]
        assert file is not None and file.content == expected
    with pytest.raises(
        ImageError, match=r"no linux/s390x image in the index \(has linux/amd64, linux/arm64\)"
    ):
        RegistrySource("linux/s390x").resolve(ref)


def test_tags_are_listed() -> None:
    repository = unique("pk-test/tags")
    image = Image([layer(tree({"/f": "x"}))])
    names = [f"nightly-dev-cu13-2026062{i}-0000000{i}" for i in range(5)]
    for name in names:
        push(REGISTRY, repository, name, image)
    client = RegistryClient(REGISTRY)
    client.page_size = 2  # the reference registry answers in one page; hubs send Link headers
    assert sorted(client.tags(repository)) == names


def test_unknown_repository_and_unreachable_registry() -> None:
    with pytest.raises(ImageError, match="not found"):
        RegistrySource().resolve(ImageRef(f"{REGISTRY}/pk-test/absent", "1"))
    client = RegistryClient("127.0.0.1:9", attempts=2)
    with pytest.raises(UnreachableError, match=r"127\.0\.0\.1:9"):
        client.tags("x")


def test_token_auth_with_credentials_from_env_or_docker_config(
    token_registry: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = unique("pk-test/private")
    push(
        token_registry.host,
        repository,
        "1",
        Image([layer(tree({"/secret": "s"}))]),
        token_registry.auth,
    )
    ref = ImageRef(f"{token_registry.host}/{repository}", "1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    with pytest.raises(ImageError, match=r"token refused|unauthorized"):
        RegistrySource().resolve(ref)

    monkeypatch.setenv("PATCHKEEPER_REGISTRY_USERNAME", token_registry.username)
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_PASSWORD", token_registry.password)
    before = len(token_registry.token_requests)
    with caplog.at_level(logging.DEBUG, logger="patchkeeper"):
        source = RegistrySource()
        found = source.read(source.resolve(ref), [P("/secret")])[P("/secret")]
    assert found is not None and found.content == b"s"
    assert len(token_registry.token_requests) > before
    logged = [r.getMessage() for r in caplog.records]
    host = token_registry.host
    assert f"registry {host}: credentials from PATCHKEEPER_REGISTRY_USERNAME/PASSWORD" in logged
    assert f"registry {host}: bearer auth for repository:{repository}:pull" in logged
    assert f"GET {host}/v2/{repository}/manifests/1 -> 401" in logged
    assert f"GET {host}/v2/{repository}/manifests/1 -> 200" in logged
    assert token_registry.password not in caplog.text

    monkeypatch.delenv("PATCHKEEPER_REGISTRY_USERNAME")
    monkeypatch.delenv("PATCHKEEPER_REGISTRY_PASSWORD")
    config = tmp_path / "docker"
    config.mkdir()
    secret = base64.b64encode(f"{token_registry.username}:{token_registry.password}".encode())
    (config / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"auth": secret.decode()}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="patchkeeper"):
        assert RegistrySource().resolve(ref).image_id.startswith("sha256:")
    assert f"registry {host}: credentials from Docker's config" in caplog.messages
    assert token_registry.password not in caplog.text


def test_basic_auth_registry(htpasswd_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repository = unique("pk-test/basic")
    push(
        htpasswd_registry.host,
        repository,
        "1",
        Image([layer(tree({"/f": "b"}))]),
        htpasswd_registry.auth,
    )
    ref = ImageRef(f"{htpasswd_registry.host}/{repository}", "1")
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_USERNAME", htpasswd_registry.username)
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_PASSWORD", htpasswd_registry.password)
    source = RegistrySource()
    assert source.read(source.resolve(ref), [P("/f")])[P("/f")] is not None


def test_429_and_503_are_retried(flaky_proxy: Callable[..., Any]) -> None:
    repository = unique("pk-test/flaky")
    push(REGISTRY, repository, "1", Image([layer(tree({"/f": "r"}))]))
    proxy = flaky_proxy(REGISTRY, failures=(429, 503), retry_after="0")
    source = RegistrySource()
    file = source.read(source.resolve(ImageRef(f"{proxy.host}/{repository}", "1")), [P("/f")])
    assert file[P("/f")] is not None
    assert {r.status for r in proxy.requests if r.injected} == {429, 503}
