"""Self-tests for tests/oci.py: crafted images are what the real registry and engine expect."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.names import unique
from tests.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Entry,
    FlakyProxy,
    Image,
    RegistryClient,
    RegistryServer,
    TokenRegistryServer,
    decompress,
    docker_save,
    engine_pull,
    engine_read,
    index,
    layer,
    make_signing_key,
    opaque,
    push,
    read_tar,
    sha256_digest,
    tree,
    whiteout,
    write_oci_layout,
)

REGISTRY = "127.0.0.1:5000"


def contents(members: list[Entry] | None) -> dict[str, bytes | str]:
    """{name: file bytes, or "dir", or "-> target"} of what engine_read returned."""
    assert members is not None
    shown: dict[str, bytes | str] = {}
    for member in members:
        if member.kind == "file":
            shown[member.name] = member.data
        elif member.kind in ("symlink", "hardlink"):
            shown[member.name] = f"{member.kind} -> {member.linkname}"
        else:
            shown[member.name] = member.kind
    return shown


# --- crafting, no services ---------------------------------------------------------------


def test_layers_keep_hostile_names_and_report_both_digests() -> None:
    hostile = ["../../etc/passwd", "/abs/path", "a/../../b", "dev/zero"]
    entries = [
        Entry.file(hostile[0], "root::0:0"),
        Entry.symlink(hostile[1], "/etc/shadow"),
        Entry.hardlink(hostile[2], "../../etc/passwd"),
        Entry.chardev(hostile[3], 1, 5),
        Entry.fifo("pipe"),
        Entry.dir("d", mode=0o700),
    ]
    for compression, media_type in [
        ("gzip", OCI_LAYER_GZIP),
        ("zstd", OCI_LAYER_ZSTD),
        ("none", OCI_LAYER_TAR),
    ]:
        lay = layer(entries, compression)  # type: ignore[arg-type]
        assert lay.media_type == media_type
        assert lay.digest == "sha256:" + hashlib.sha256(lay.blob).hexdigest()
        assert lay.diff_id == "sha256:" + hashlib.sha256(lay.tar).hexdigest()
        assert decompress(lay.blob) == lay.tar
        assert (lay.digest == lay.diff_id) == (compression == "none")
        back = read_tar(lay.blob)
        assert [e.name for e in back] == [*hostile, "pipe", "d"]
        assert [e.kind for e in back] == ["file", "symlink", "hardlink", "chardev", "fifo", "dir"]
        assert back[0].data == b"root::0:0" and back[2].linkname == "../../etc/passwd"
        assert (back[3].devmajor, back[3].devminor) == (1, 5) and back[5].mode == 0o700
    assert layer(entries).blob == layer(entries).blob  # reproducible


def test_whiteout_and_opaque_names() -> None:
    assert whiteout("etc/gone.txt").name == "etc/.wh.gone.txt"
    assert whiteout("/top").name == ".wh.top"
    assert whiteout("/a/b/dir/").name == "a/b/.wh.dir"
    assert opaque("opq").name == "opq/.wh..wh..opq"
    assert opaque("/a/b/").name == "a/b/.wh..wh..opq"
    assert [e.name for e in tree({"a/b/c": "x", "a/d": "y"})] == ["a", "a/b", "a/b/c", "a/d"]


def test_manifest_and_config_shapes() -> None:
    lower, upper = layer(tree({"a": "1"})), layer([Entry.file("b", "2")], "none")
    img = Image([lower, upper], labels={"k": "v"}, annotations={"note": "x"})
    assert img.manifest["mediaType"] == OCI_MANIFEST
    assert img.manifest["layers"] == [lower.descriptor(), upper.descriptor()]
    assert img.manifest["config"]["digest"] == sha256_digest(img.config_blob)
    assert img.config["rootfs"]["diff_ids"] == [lower.diff_id, upper.diff_id]
    assert img.config["config"]["Labels"] == {"k": "v"}
    assert img.digest == sha256_digest(img.manifest_blob)

    docker_image = Image([lower]).as_docker()
    assert docker_image.manifest["mediaType"] == DOCKER_MANIFEST
    assert docker_image.manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert docker_image.manifest["layers"][0]["mediaType"] == DOCKER_LAYER_GZIP

    multi = index({"linux/amd64": img, "linux/arm64/v8": Image([upper])})
    assert multi.manifest["mediaType"] == OCI_INDEX
    platforms = [m["platform"] for m in multi.manifest["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    assert multi.image_for("linux/arm64").config["architecture"] == "arm64"
    listed = index({"linux/amd64": img.as_oci()}, flavor="docker")
    assert listed.manifest["mediaType"] == DOCKER_MANIFEST_LIST
    assert listed.images[0].media_type == DOCKER_MANIFEST


def test_oci_layout_on_disk(tmp_path: Path) -> None:
    img = Image([layer(tree({"x": "1"}))])
    multi = index({"linux/amd64": img, "linux/arm64": Image([layer(tree({"y": "2"}))])})
    write_oci_layout(tmp_path, img, "single")
    write_oci_layout(tmp_path, multi, "multi")
    write_oci_layout(tmp_path, img, "single")  # same tag again: replaced, not duplicated
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top = json.loads((tmp_path / "index.json").read_text())
    refs = {m["annotations"][REF_NAME_ANNOTATION]: m for m in top["manifests"]}
    assert refs["single"]["digest"] == img.digest and refs["single"]["mediaType"] == OCI_MANIFEST
    assert refs["multi"]["digest"] == multi.digest and refs["multi"]["mediaType"] == OCI_INDEX
    assert len(top["manifests"]) == 2
    for blob in (tmp_path / "blobs/sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    for digest in multi.all_blobs():
        assert (tmp_path / "blobs/sha256" / digest.removeprefix("sha256:")).is_file()


# --- the real registry at 127.0.0.1:5000 and the real engine ------------------------------

LOWER = layer(
    tree(
        {
            "etc/keep.txt": "kept\n",
            "etc/gone.txt": "whited out\n",
            "opq/old.txt": "hidden by opaque\n",
            "opq/sub/deep.txt": "also hidden\n",
            "app/version": "1\n",
            "olddir/inner.txt": "whole dir whited out\n",
        }
    )
)
MIDDLE = layer(
    [
        Entry.file("app/version", "2\n"),
        whiteout("etc/gone.txt"),
        whiteout("olddir"),
        opaque("opq"),
        Entry.file("opq/new.txt", "new\n"),
    ]
)
UPPER = layer(
    [Entry.symlink("app/current", "version"), Entry.file("app/extra", "3\n", mode=0o755)],
    "none",
)
MERGED = Image([LOWER, MIDDLE, UPPER], labels={"org.example.test": "merged"}, cmd=["/none"])


@pytest.fixture(scope="module")
def merged_image(docker_client: Any) -> Iterator[str]:
    """MERGED pushed to the shared registry and pulled by the engine; yields the reference."""
    repository = unique("pk-oci-tests/merged")
    assert push(REGISTRY, repository, "1", MERGED) == MERGED.digest
    reference = f"{REGISTRY}/{repository}:1"
    engine_pull(docker_client, reference)
    yield reference
    docker_client.images.remove(reference, force=True)


@pytest.mark.docker
def test_engine_merges_whiteouts_and_opaque_dirs(docker_client: Any, merged_image: str) -> None:
    image = docker_client.images.get(merged_image)
    assert image.labels == {"org.example.test": "merged"}
    assert f"{merged_image.rsplit(':', 1)[0]}@{MERGED.digest}" in image.attrs["RepoDigests"]
    found = engine_read(
        docker_client, merged_image, ["/app", "/etc/keep.txt", "/etc/gone.txt", "/opq", "/olddir"]
    )
    assert contents(found["/app"]) == {
        "app": "dir",
        "app/version": b"2\n",  # upper wins
        "app/current": "symlink -> version",
        "app/extra": b"3\n",
    }
    assert contents(found["/etc/keep.txt"]) == {"keep.txt": b"kept\n"}
    assert found["/etc/gone.txt"] is None  # whited out
    assert found["/olddir"] is None  # whited-out directory
    assert contents(found["/opq"]) == {"opq": "dir", "opq/new.txt": b"new\n"}  # opaque
    extra = next(e for e in found["/app"] or [] if e.name == "app/extra")
    assert extra.mode == 0o755


@pytest.mark.docker
def test_docker_save_is_the_legacy_layout_with_our_diff_ids(
    docker_client: Any, merged_image: str, tmp_path: Path
) -> None:
    archive = docker_save(docker_client, merged_image, tmp_path / "saved.tar")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        [entry] = json.load(manifest_file)
        assert entry["RepoTags"] == [merged_image]
        assert "repositories" in names
        layer_tars = []
        for name in entry["Layers"]:
            member = tar.extractfile(name)
            assert member is not None and name.endswith("/layer.tar")
            layer_tars.append(member.read())
        config_file = tar.extractfile(entry["Config"])
        assert config_file is not None
        config = json.load(config_file)
    # The engine keeps the uncompressed tars byte for byte (tar-split): diff_ids match ours.
    assert [sha256_digest(t) for t in layer_tars] == [LOWER.diff_id, MIDDLE.diff_id, UPPER.diff_id]
    assert config["rootfs"]["diff_ids"] == MERGED.config["rootfs"]["diff_ids"]
    assert entry["Config"] == MERGED.config_digest.removeprefix("sha256:") + ".json"


@pytest.mark.docker
@pytest.mark.parametrize("flavor", ["oci", "docker"])
def test_engine_picks_amd64_from_a_multi_platform_index(docker_client: Any, flavor: str) -> None:
    multi = index(
        {
            "linux/arm64/v8": Image([layer(tree({"arch": "arm64"}))], cmd=["/none"]),
            "linux/amd64": Image([layer(tree({"arch": "amd64"}))], cmd=["/none"]),
        },
        flavor=flavor,  # type: ignore[arg-type]
    )
    repository = unique(f"pk-oci-tests/index-{flavor}")
    assert push(REGISTRY, repository, "multi", multi) == multi.digest
    with RegistryClient(REGISTRY) as client:
        stored = client.get_manifest(repository, "multi")
        assert stored.content == multi.manifest_blob
        assert stored.headers["content-type"] == multi.media_type
    reference = f"{REGISTRY}/{repository}:multi"
    try:
        image = engine_pull(docker_client, reference, platform="linux/amd64")
        assert image.attrs["Architecture"] == "amd64"
        assert f"{REGISTRY}/{repository}@{multi.digest}" in image.attrs["RepoDigests"]
        assert image.id == multi.image_for("linux/amd64").config_digest
        assert contents(engine_read(docker_client, reference, ["/arch"])["/arch"]) == {
            "arch": b"amd64"
        }
    finally:
        docker_client.images.remove(reference, force=True)


@pytest.mark.docker
def test_registry_accepts_zstd_but_this_engine_cannot_unpack_it(docker_client: Any) -> None:
    img = Image([layer(tree({"z": "compressed with zstd"}), "zstd")], cmd=["/none"])
    repository = unique("pk-oci-tests/zstd")
    assert push(REGISTRY, repository, "1", img) == img.digest
    with RegistryClient(REGISTRY) as client:
        assert client.get_manifest(repository, "1").content == img.manifest_blob
        assert client.get_blob(repository, img.layers[0].digest) == img.layers[0].blob
    # Docker 20.10 takes the zstd blob for a plain tar; newer engines (23+) unpack it.
    if docker_client.version()["Version"].startswith("20."):
        with pytest.raises(RuntimeError, match="failed to register layer"):
            engine_pull(docker_client, f"{REGISTRY}/{repository}:1")


def test_second_push_skips_existing_blobs() -> None:
    img = Image([layer(tree({"once": uuid.uuid4().hex}))])
    repository = unique("pk-oci-tests/skip")
    with RegistryClient(REGISTRY) as client:
        client.push(repository, "a", img)
        assert client.uploaded == list(img.blobs) and client.skipped == []
    with RegistryClient(f"http://{REGISTRY}") as client:
        assert client.push(repository, "b", img) == img.digest
        assert client.uploaded == [] and client.skipped == list(img.blobs)
        assert sorted(client.tags(repository)) == ["a", "b"]


# --- registries that need credentials ----------------------------------------------------


def test_htpasswd_registry_needs_the_password(htpasswd_registry: RegistryServer) -> None:
    img = Image([layer(tree({"secret": "basic"}))])
    repository = unique("pk-oci-tests/basic")
    with pytest.raises(httpx.HTTPStatusError) as anonymous:
        push(htpasswd_registry.host, repository, "1", img)
    assert anonymous.value.response.status_code == 401
    assert anonymous.value.response.headers["www-authenticate"].startswith("Basic ")
    with pytest.raises(httpx.HTTPStatusError) as wrong:
        push(htpasswd_registry.url, repository, "1", img, ("patch", "wrong"))
    assert wrong.value.response.status_code == 401

    assert htpasswd_registry.auth == ("patch", "keeper-secret")
    assert push(htpasswd_registry.host, repository, "1", img, htpasswd_registry.auth) == img.digest
    with RegistryClient(htpasswd_registry.url, htpasswd_registry.auth) as client:
        assert client.get_manifest(repository, "1").content == img.manifest_blob
    assert httpx.get(f"{htpasswd_registry.url}/v2/").status_code == 401


def test_token_registry_issues_scoped_jwts(token_registry: TokenRegistryServer) -> None:
    img = Image([layer(tree({"secret": "bearer"}))])
    private, public = unique("pk-oci-tests/private"), unique("public/pk-oci-tests")
    before = len(token_registry.token_requests)

    with pytest.raises(httpx.HTTPStatusError) as anonymous:
        push(token_registry.host, private, "1", img)
    assert anonymous.value.response.status_code == 401  # the token server said no
    with pytest.raises(httpx.HTTPStatusError) as wrong:
        push(token_registry.host, private, "1", img, (token_registry.username or "", "nope"))
    assert wrong.value.response.status_code == 401

    with RegistryClient(token_registry.host, token_registry.auth) as client:
        assert client.push(private, "1", img) == img.digest
        assert client.push(public, "1", img) == img.digest
        assert client.token_fetches == 2  # one token per repository, reused for every blob
    used = token_registry.token_requests[before:]
    assert [(r.account, r.status) for r in used] == [
        (None, 401),
        (None, 401),
        ("patch", 200),
        ("patch", 200),
    ]
    assert used[2].scopes == (f"repository:{private}:pull,push",)
    assert used[2].granted == (("repository", private, ("pull", "push")),)

    # Anonymous callers may pull public/* (a pull-only token) but not push there.
    with RegistryClient(token_registry.url) as client:
        assert client.get_manifest(public, "1").content == img.manifest_blob
        with pytest.raises(httpx.HTTPStatusError) as denied:
            client.push(public, "2", Image([layer(tree({"more": "x"}))]))
        assert denied.value.response.status_code == 401
    assert token_registry.token_requests[-1].granted == (("repository", public, ("pull",)),)


def test_token_registry_verifies_signature_and_claims(token_registry: TokenRegistryServer) -> None:
    response = httpx.get(
        token_registry.token_url,
        params={"service": token_registry.service, "scope": "repository:some/repo:pull"},
        auth=token_registry.auth,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert token_registry.rootcertbundle is not None
    certificate = x509.load_pem_x509_certificate(token_registry.rootcertbundle.read_bytes())
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    assert base64.b64decode(header["x5c"][0]) == certificate.public_bytes(Encoding.DER)
    claims = jwt.decode(
        body["token"],
        certificate.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience=token_registry.service,
        issuer=token_registry.issuer,
    )
    assert claims["sub"] == "patch" and claims["jti"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["access"] == [{"type": "repository", "name": "some/repo", "actions": ["pull"]}]

    # The registry accepts that token, and refuses a well-formed one from an untrusted key.
    v2 = f"{token_registry.url}/v2/"
    assert httpx.get(v2, headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
    forged = make_signing_key().sign({**claims, "exp": int(time.time()) + 300})
    assert httpx.get(v2, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    anonymous = httpx.get(v2)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith(
        f'Bearer realm="{token_registry.token_url}",service="{token_registry.service}"'
    )


@pytest.mark.docker
def test_engine_pulls_from_the_token_registry_with_credentials(
    docker_client: Any, token_registry: TokenRegistryServer
) -> None:
    img = Image([layer(tree({"hello": "token"}))], cmd=["/none"])
    repository = unique("pk-oci-tests/engine")
    push(token_registry.host, repository, "1", img, token_registry.auth)
    reference = f"{token_registry.host}/{repository}:1"
    with pytest.raises(RuntimeError):
        engine_pull(docker_client, reference)
    before = len(token_registry.token_requests)
    try:
        engine_pull(docker_client, reference, auth=token_registry.auth)
        found = engine_read(docker_client, reference, ["/hello"])
        assert contents(found["/hello"]) == {"hello": b"token"}
    finally:
        docker_client.images.remove(reference, force=True)
    engine_requests = token_registry.token_requests[before:]
    assert any(
        r.account == "patch" and f"repository:{repository}:pull" in r.scopes
        for r in engine_requests
    )


# --- the flaky proxy -------------------------------------------------------------------


def test_flaky_proxy_fails_each_path_first_then_forwards(
    flaky_proxy: Callable[..., FlakyProxy],
) -> None:
    proxy = flaky_proxy(REGISTRY, failures=[429, 503])
    first = httpx.get(f"{proxy.url}/v2/")
    assert first.status_code == 429 and first.headers["retry-after"] == "0"
    assert httpx.get(f"{proxy.url}/v2/").status_code == 503
    assert httpx.get(f"{proxy.url}/v2/").status_code == 200

    img = Image([layer(tree({"retried": uuid.uuid4().hex}))])
    repository = unique("pk-oci-tests/flaky")
    with pytest.raises(httpx.HTTPStatusError) as failed:
        push(proxy.host, repository, "1", img)
    assert failed.value.response.status_code in (429, 503)
    assert push(proxy.host, repository, "1", img, retries=2) == img.digest
    with RegistryClient(REGISTRY) as direct:
        assert direct.get_manifest(repository, "1").content == img.manifest_blob
    injected = [r.status for r in proxy.requests if r.injected]
    assert injected.count(429) >= 3 and injected.count(503) >= 3
