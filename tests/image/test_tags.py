import re

import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.tags import newest_tag

PATTERN = re.compile(r"^nightly-dev-cu13-(?P<date>\d{8})-(?P<sha>[0-9a-f]{8})$")
TAGS = [
    "nightly-dev-cu13-20260619-aaaaaaaa",
    "nightly-dev-cu13-20260621-bbbbbbbb",
    "latest",
    "nightly-dev-cu12-20260622-cccccccc",
    "nightly-dev-cu13-20260620-dddddddd",
]


def test_newest_by_date_and_other_tags_ignored() -> None:
    asked: list[str] = []
    newest = newest_tag(TAGS, PATTERN, "repo", lambda t: asked.append(t) or None)
    assert newest.tag == "nightly-dev-cu13-20260621-bbbbbbbb" and newest.sha == "bbbbbbbb"
    assert asked == []  # no tie, no extra lookups


def test_same_day_builds_are_ordered_by_created_time() -> None:
    tags = [*TAGS, "nightly-dev-cu13-20260621-00000000"]
    created = {
        "nightly-dev-cu13-20260621-bbbbbbbb": "2026-06-21T01:47:00Z",
        "nightly-dev-cu13-20260621-00000000": "2026-06-21T13:05:00Z",
    }
    assert (
        newest_tag(tags, PATTERN, "repo", created.get).tag == "nightly-dev-cu13-20260621-00000000"
    )


def test_no_matching_tag_is_a_clear_error() -> None:
    with pytest.raises(ImageError, match="no tag of lmsysorg/sglang matches"):
        newest_tag(["latest"], PATTERN, "lmsysorg/sglang", lambda t: None)
