"""The Docker Engine source, against a real daemon and real images."""

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from patchkeeper.demo.image import build_image
from patchkeeper.errors import ImageError, UnsafeInputError
from patchkeeper.image.cache import CachedSource
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef

P = PurePosixPath


@pytest.fixture(scope="module")
def tricky_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tree = tmp_path_factory.mktemp("tree")
    (tree / "etc").mkdir()
    (tree / "etc/real.txt").write_text("inside the image\n")
    (tree / "app").mkdir()
    os.symlink("/etc/real.txt", tree / "app/absolute-link")
    os.symlink("../../../../etc/real.txt", tree / "app/climbing-link")
    os.symlink("loop-b", tree / "app/loop-a")
    os.symlink("loop-a", tree / "app/loop-b")
    reference = "patchkeeper-test/tricky:1"
    build_image(docker_client, reference, {"/": tree}, labels={"x": "y"}, with_busybox=False)
    yield reference
    docker_client.images.remove(reference, force=True)


def test_reads_files_and_reports_absent_ones(docker_client: Any, tricky_image: str) -> None:
    source = EngineSource(docker_client)
    image = source.resolve(ImageRef.parse(tricky_image))
    assert image.image_id.startswith("sha256:") and image.labels == {"x": "y"}
    found = source.read(image, [P("/etc/real.txt"), P("/nope")])
    assert found[P("/nope")] is None
    real = found[P("/etc/real.txt")]
    assert real is not None and real.content == b"inside the image\n" and not real.via_symlink


@pytest.mark.parametrize("link", ["/app/absolute-link", "/app/climbing-link"])
def test_symlinks_resolve_inside_the_image_never_on_the_host(
    docker_client: Any, tricky_image: str, link: str
) -> None:
    source = EngineSource(docker_client)
    image = source.resolve(ImageRef.parse(tricky_image))
    file = source.read(image, [P(link)])[P(link)]
    assert file is not None
    assert file.content == b"inside the image\n"
    assert file.resolved == P("/etc/real.txt") and file.via_symlink


def test_symlink_loops_and_directories_are_refused(docker_client: Any, tricky_image: str) -> None:
    source = EngineSource(docker_client)
    image = source.resolve(ImageRef.parse(tricky_image))
    with pytest.raises(UnsafeInputError, match="symlink hops"):
        source.read(image, [P("/app/loop-a")])
    with pytest.raises(UnsafeInputError, match="directory"):
        source.read(image, [P("/etc")])


def test_unknown_image_is_a_clear_error(docker_client: Any) -> None:
    with pytest.raises(ImageError, match="not in the local Docker engine"):
        EngineSource(docker_client).resolve(ImageRef.parse("patchkeeper-test/absent:0"))


def test_second_read_comes_from_the_cache(
    docker_client: Any, tricky_image: str, tmp_path: Path
) -> None:
    calls: list[list[PurePosixPath]] = []

    class Counting(EngineSource):
        def read(self, image, paths, git_dirs=()):  # type: ignore[no-untyped-def]
            calls.append(list(paths))
            return super().read(image, paths, git_dirs)

    cached = CachedSource(Counting(docker_client), tmp_path)
    image = cached.resolve(ImageRef.parse(tricky_image))
    first = cached.read(image, [P("/etc/real.txt"), P("/nope")])
    second = cached.read(image, [P("/etc/real.txt"), P("/nope")])
    assert first == second
    assert calls == [[P("/etc/real.txt"), P("/nope")]]
