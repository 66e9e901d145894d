"""Each small trap of issue 14, pinned: bad input is a clear error with its exit code,
never a hang, a silent misreading or a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from typer.testing import CliRunner

from patchkeeper.chat_template import render
from patchkeeper.cli import app
from patchkeeper.config import load_patchset, load_recipe
from patchkeeper.config.models import MAX_TAG_LENGTH, Service, TagRegex
from patchkeeper.demo.setup import Demo
from patchkeeper.errors import ConfigError, ImageError
from patchkeeper.image.layered import read_config
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.manifests import choose_platform, image_parts, parse_json
from patchkeeper.image.model import ImageRef
from patchkeeper.image.registry import RegistrySource
from tests.names import unique
from tests.oci import Image, index, layer, push, sha256_digest, tree

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
runner = CliRunner()
DIGEST = "sha256:" + "a" * 64


def _patchset(tmp_path: Path, patch: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"upstream: {{github: o/r}}\nsource_root: /src\npatches:\n  - {patch}\n")
    return path


def test_pr_true_is_not_pr_1(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"p.yaml:4: patches.0.pr: Input should be a valid"):
        load_patchset(_patchset(tmp_path, "{pr: true, why: x}"))
    assert load_patchset(_patchset(tmp_path, "{pr: 7, why: x}")).patches[0].pr == 7


def _recipe(tmp_path: Path, tags: str) -> Path:
    (tmp_path / "p.yaml").write_text("upstream: {github: o/r}\nsource_root: /s\npatches: []\n")
    path = tmp_path / "r.yaml"
    path.write_text(
        f"image: r\ntags: '{tags}'\npatchsets: [p.yaml]\nservice: {{model: {{path: /m}}}}\n"
    )
    return path


def test_a_tags_regex_needs_date_and_sha_groups(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tags: .*lacks named group\(s\) \['date'\]"):
        load_recipe(_recipe(tmp_path, r"nightly-(\d+)-(?P<sha>[0-9a-f]+)"))


def test_nested_repetition_in_tags_does_not_hang_on_a_long_tag() -> None:
    """`(\\d+)+` takes `re` exponential time on a long near-miss; here it is instant."""
    pattern = TagRegex(r"nightly-(?P<date>(\d+)+)(?P<sha>[0-9a-f]{8})")
    assert pattern.fullmatch("nightly-" + "1" * 100 + "-") is None
    assert pattern.fullmatch("nightly-20260101abcdef12") == {"date": "20260101", "sha": "abcdef12"}


def test_a_pattern_that_still_backtracks_is_stopped_and_named() -> None:
    pattern = TagRegex(r"(?P<date>(\d|\d\d|\d\d\d)+)(?P<sha>\d?)(?<!\d{3})")
    with pytest.raises(ConfigError, match=r"took over .* on the tag '1111.*simplify the pattern"):
        pattern.fullmatch("1" * 100 + "-")


def test_tags_longer_than_the_spec_allows_are_not_tags() -> None:
    pattern = TagRegex(r"(?P<date>\d+)(?P<sha>)")
    assert pattern.fullmatch("1" * MAX_TAG_LENGTH) is not None
    assert pattern.fullmatch("1" * (MAX_TAG_LENGTH + 1)) is None


def test_a_non_utf8_chat_template_is_a_config_error(tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_bytes(b"{{ messages }}\xff\xfe")
    service = Service.model_validate({"model": {"path": "/m"}, "chat_template": str(template)})
    with pytest.raises(ConfigError, match=r"t.jinja: service.chat_template is not UTF-8 text"):
        render(service, tmp_path / "r.yaml")
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_bytes(b'{"chat_template": "\xff"}')
    derived = Service.model_validate(
        {"model": {"path": "/m", "host_path": str(model)}, "chat_template": {"from": "model"}}
    )
    with pytest.raises(ConfigError, match=r"tokenizer_config.json: the tokenizer config is not"):
        render(derived, tmp_path / "r.yaml")


def test_arm64_v8_is_arm64() -> None:
    entries = {
        "manifests": [
            {"digest": DIGEST, "platform": {"os": "linux", "architecture": "arm64"}},
            {
                "digest": "sha256:" + "b" * 64,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
            },
        ]
    }
    assert choose_platform(entries, "linux/arm64/v8", "x") == DIGEST
    assert choose_platform(entries, "linux/arm64", "x") == DIGEST
    assert choose_platform(entries, "linux/arm/v7", "x") == "sha256:" + "b" * 64
    with pytest.raises(ImageError, match="no linux/arm/v6 image"):
        choose_platform(entries, "linux/arm/v6", "x")
    with pytest.raises(ImageError, match="expected os/arch"):
        choose_platform(entries, "arm64", "x")


def test_an_index_entry_with_a_variant_matches_its_default_spelling() -> None:
    amd = Image([layer(tree({"/arch": "amd64"}))])
    arm = Image([layer(tree({"/arch": "arm64"}))])
    repository = unique("pk-test/variant")
    push(REGISTRY, repository, "1", index({"linux/amd64": amd, "linux/arm64/v8": arm}))
    source = RegistrySource("linux/arm64")
    arch = PurePosixPath("/arch")
    found = source.read(source.resolve(ImageRef(f"{REGISTRY}/{repository}", "1")), [arch])[arch]
    assert found is not None and found.content == b"arm64"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_malformed_manifest_documents(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_json(data, "reg/repo@tag")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "config has no sha256 digest"),
        ({"config": {"digest": "md5:x"}}, "config has no sha256 digest"),
        ({"config": {"digest": DIGEST}, "layers": "x"}, "'layers' is not a list"),
        ({"config": {"digest": DIGEST}, "layers": [{"digest": DIGEST, "size": "9"}]}, "size '9'"),
        ({"config": {"digest": DIGEST}, "layers": [{"size": 1}]}, r"layers\[0\] has no sha256"),
    ],
)
def test_malformed_image_manifests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        image_parts(body, "reg/repo@tag")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"config": "x"}', "'config.Labels' is not an object"),
        (b'{"config": {"Labels": [1]}}', "'config.Labels' is not an object"),
        (b'{"created": 5}', "'created' is not a string"),
    ],
)
def test_malformed_image_configs(config: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        read_config(config, sha256_digest(config), "img")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            b'{"schemaVersion": 2, "config": {"digest": "nope"}, "layers": []}',
            "malformed manifest: config has no sha256 digest",
        ),
        (b"{not json", r"blobs/sha256/[0-9a-f]{64}: malformed manifest \(not JSON: "),
        (b"[1, 2]", r"blobs/sha256/[0-9a-f]{64}: malformed manifest \(not a JSON object\)"),
    ],
)
def test_a_malformed_manifest_in_a_layout_is_an_image_error(
    tmp_path: Path, manifest: bytes, message: str
) -> None:
    digest = sha256_digest(manifest)
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(manifest)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1"},
    }
    (tmp_path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    with pytest.raises(ImageError, match=message):
        LayoutSource(tmp_path).resolve(ImageRef("x", "1"))


def test_a_401_without_a_challenge_says_so(flaky_proxy: Callable[..., Any]) -> None:
    repository = unique("pk-test/no-challenge")
    push(REGISTRY, repository, "1", Image([layer(tree({"/f": "r"}))]))
    proxy = flaky_proxy(REGISTRY, failures=(401, 401))
    with pytest.raises(ImageError, match="401 unauthorized with no WWW-Authenticate challenge"):
        RegistrySource().resolve(ImageRef(f"{proxy.host}/{repository}", "1"))


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real small filesystem (read-only, or tiny), mounted for the test."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _sync(recipe: Path, out: Path) -> tuple[int, dict[str, Any]]:
    args = [
        "sync",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--json",
        "--image-source",
        "engine",
    ]
    done = runner.invoke(app, args)
    return done.exit_code, json.loads(done.stdout)


@pytest.mark.docker
def test_a_read_only_out_fails_before_any_work(demo: Demo, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as readonly:
        code, doc = _sync(demo.recipe, readonly / "overlays")
    assert code == 2 and doc["schema"] == "patchkeeper.error/1"
    assert doc["error"] == f"--out {readonly / 'overlays'}: not writable: Read-only file system"


@pytest.mark.docker
def test_a_full_out_is_a_clear_error_and_leaves_nothing(demo: Demo, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "size=64k") as full:
        filler = full / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
        code, doc = _sync(demo.recipe, full / "overlays")
        store = full / "overlays" / ".store"
        leftovers = sorted(p.name for p in store.iterdir()) if store.is_dir() else []
    assert code == 2, doc
    assert "cannot write the overlay (No space left on device); nothing was written" in doc["error"]
    assert leftovers == []
