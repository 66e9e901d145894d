"""Digests and image references are checked whole: they become cache file names and URLs."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkeeper.errors import ConfigError, ImageError
from patchkeeper.image import digests
from patchkeeper.image.manifests import image_parts
from patchkeeper.image.model import ImageRef

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
# What a registry or a hand-edited file could put after (or around) a valid digest.
TAILS = ["/../../x", "\n", "\r\n", " ", "\x00", "/", "#x", "?n=1", ":latest"]


@pytest.mark.parametrize("tail", TAILS)
def test_a_digest_with_anything_after_it_is_refused(tail: str) -> None:
    assert not digests.is_sha256(DIGEST + tail)
    with pytest.raises(ImageError, match="malformed or unsupported digest"):
        digests.checked(DIGEST + tail, "layer")
    with pytest.raises(ConfigError, match="digest must be sha256"):
        ImageRef.parse(f"example/sglang@{DIGEST}{tail}")
    body = {"config": {"digest": DIGEST + tail, "size": 1}, "layers": []}
    with pytest.raises(ImageError, match="config has no sha256 digest"):
        image_parts(body, "manifest")


def test_digests_and_references_that_are_whole_pass() -> None:
    assert digests.checked(DIGEST, "x") == DIGEST
    assert digests.checked("sha512:" + HEX * 2, "x") == "sha512:" + HEX * 2
    ref = ImageRef.parse(f"127.0.0.1:5000/lmsysorg/sglang:nightly-dev@{DIGEST}")
    assert (ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5000/lmsysorg/sglang",
        "nightly-dev",
        DIGEST,
    )
    assert ImageRef.parse("localhost/x").repository == "localhost/x"


@pytest.mark.parametrize(
    "text",
    ["example/../../x:1", "example/sglang:bad tag", "Example/Upper", "a//b", "/abs", "x@", "a:b\n"],
)
def test_bad_references_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="image reference"):
        ImageRef.parse(text)


REF_ALPHABET = string.ascii_letters + string.digits + "/:@._-\n\x00 " + "../"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(REF_ALPHABET, max_size=80),
        st.builds(lambda t: f"example/sglang@{DIGEST}{t}", st.text(max_size=10)),
        st.text(max_size=40),
    )
)
def test_any_reference_parses_to_safe_parts_or_a_config_error(text: str) -> None:
    try:
        ref = ImageRef.parse(text)
    except ConfigError:
        return
    parts = [ref.repository, ref.tag or "", ref.digest or ""]
    assert not any(c in part for part in parts for c in "\n\r\x00 \\?#")
    assert ".." not in ref.repository.split("/") and not ref.repository.startswith("/")
    assert ref.digest is None or digests.is_sha256(ref.digest)
    assert ImageRef.parse(str(ref)) == ref  # what is printed reads back the same


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=140))
def test_any_digest_text_is_checked_or_refused(text: str) -> None:
    try:
        value = digests.checked(text, "x")
    except ImageError as err:
        assert "malformed or unsupported digest" in str(err)
        return
    name = digests.file_name(value)
    assert "/" not in name and name.isprintable() and name == name.strip()
