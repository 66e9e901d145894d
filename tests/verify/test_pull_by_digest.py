"""`up --pull` and the image runtime fetch the lock's image by digest, never by its tag."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import docker.errors
import pytest

from patchkeeper.errors import ImageError
from patchkeeper.image.engine import local_image, pull_image
from tests.names import unique
from tests.oci import Image, layer, push, tree
from tests.overlay.locks import make_lock

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")


def test_the_locked_digest_is_pulled_even_after_the_tag_moved(docker_client: Any) -> None:
    repository = unique("pk-test/pinned")
    locked = Image([layer(tree({"/app/f.py": "the image the lock was made from\n"}))])
    push(REGISTRY, repository, "nightly", locked)
    push(REGISTRY, repository, "nightly", Image([layer(tree({"/app/f.py": "moved\n"}))]))
    image = {
        "ref": f"{REGISTRY}/{repository}:nightly",
        "digest": locked.digest,
        "id": locked.config_digest,
        "pinned": f"{REGISTRY}/{repository}@{locked.digest}",
        "commit": "3" * 40,
        "source": "registry",
    }
    lock = make_lock("f" * 64, image=image)
    assert local_image(docker_client, lock.image) is None  # not here yet
    try:
        assert pull_image(docker_client, lock.image) == locked.config_digest
        assert local_image(docker_client, lock.image) == locked.config_digest
    finally:  # whatever this run pulled of its repository
        pulled = {i.id for i in docker_client.images.list(name=f"{REGISTRY}/{repository}")}
        for image_id in pulled | {locked.config_digest}:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image_id, force=True)

    unpinned = make_lock("f" * 64, image={**image, "digest": None, "pinned": locked.config_digest})
    with pytest.raises(ImageError, match=rf"{repository}:nightly .*lock pins no digest"):
        pull_image(docker_client, unpinned.image)
