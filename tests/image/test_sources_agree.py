"""One image, four ways in: registry, engine, `docker save` archive, OCI layout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from patchkeeper.errors import UnsafeInputError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.identity import identify
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ImageSource, PathKind, ResolvedImage
from patchkeeper.image.registry import RegistrySource
from tests.names import unique
from tests.oci import (
    Entry,
    Image,
    docker_save,
    engine_pull,
    layer,
    push,
    tree,
    whiteout,
    write_oci_layout,
)

REGISTRY = os.environ.get("PATCHKEEPER_TEST_REGISTRY", "127.0.0.1:5000")
ROOT = PurePosixPath("/sgl-workspace/sglang")
SHA = "89abcdef0123456789abcdef0123456789abcdef"
NEW_SHA = "1111111111222222222233333333334444444444"
SERVING = ROOT / "python/sglang/srt/entrypoints/anthropic/serving.py"
Row = tuple[str, str, str, dict[PurePosixPath, bytes | None]]


@contextlib.contextmanager
def everywhere(
    docker_client: Any, tmp_path: Path, image_def: Image
) -> Iterator[list[tuple[ImageSource, ResolvedImage]]]:
    """`image_def` as each of the four sources resolves it (pushed, pulled, saved, laid out)."""
    repository = unique("pk-test/agree")
    tag = f"nightly-dev-cu13-20260621-{SHA[:8]}"
    reference = f"{REGISTRY}/{repository}:{tag}"
    push(REGISTRY, repository, tag, image_def)
    engine_pull(docker_client, reference)
    try:
        archive = docker_save(docker_client, reference, tmp_path / "saved.tar")
        layout = write_oci_layout(tmp_path / "layout", image_def, tag)
        sources: list[tuple[ImageSource, str]] = [
            (RegistrySource(), reference),
            (EngineSource(docker_client), reference),
            (LayoutSource(archive), reference),
            (LayoutSource(layout), f"{repository}:{tag}"),
        ]
        yield [(source, source.resolve(ImageRef.parse(ref))) for source, ref in sources]
    finally:
        docker_client.images.remove(reference, force=True)


def read_everywhere(
    docker_client: Any, tmp_path: Path, image_def: Image, paths: list[PurePosixPath]
) -> list[Row]:
    """(source, image id, commit, contents) from each of the four sources."""
    rows = []
    with everywhere(docker_client, tmp_path, image_def) as resolved:
        for source, image in resolved:
            files = source.read(image, paths, [ROOT / ".git"])
            commit = identify(source, image, ROOT, files=files).commit
            contents = {p: f.content if (f := files[p]) else None for p in paths}
            rows.append((source.name, image.image_id, commit, contents))
    return rows


def test_the_same_commit_and_files_from_every_source(docker_client: Any, tmp_path: Path) -> None:
    checkout = layer(
        tree(
            {
                f"{ROOT}/.git/HEAD": "ref: refs/heads/main\n",
                f"{ROOT}/.git/packed-refs": f"# pack-refs with: peeled\n{SHA} refs/heads/main\n",
                str(SERVING): "old\n",
                f"{ROOT}/stale.py": "x\n",
            }
        )
    )
    upper = layer([*tree({str(SERVING): "new\n"}), whiteout(f"{ROOT}/stale.py")])
    image_def = Image([checkout, upper])
    rows = read_everywhere(docker_client, tmp_path, image_def, [SERVING, ROOT / "stale.py"])
    expected = (image_def.config_digest, SHA, {SERVING: b"new\n", ROOT / "stale.py": None})
    assert all(row[1:] == expected for row in rows), rows
    assert [row[0] for row in rows] == ["registry", "engine", "layout", "layout"]


def test_hardlinks_recreated_checkouts_and_relative_gitdirs_read_alike(
    docker_client: Any, tmp_path: Path
) -> None:
    """A hardlink keeps the bytes its layer linked; a checkout deleted and recreated within
    one layer hides the old one; a submodule-style `.git` file names a relative gitdir."""
    first = layer(
        [
            *tree({"/app/a": "A\n"}),
            Entry.hardlink("app/b", "app/a"),
            *tree(
                {
                    f"{ROOT}/.git/HEAD": "ref: refs/heads/main\n",
                    f"{ROOT}/.git/refs/heads/main": f"{SHA}\n",
                    str(SERVING): "old\n",
                    f"{ROOT}/stale.py": "x\n",
                }
            ),
        ]
    )
    modules = "/sgl-workspace/.git/modules/sglang"
    second = layer(  # in byte order, the whiteout where the path it deletes sorts
        [
            *tree({"/app/a": "B\n"}),
            *tree(
                {
                    f"{modules}/HEAD": "ref: refs/heads/main\n",
                    f"{modules}/packed-refs": f"{NEW_SHA} refs/heads/main\n",
                }
            ),
            whiteout(str(ROOT)),
            Entry.dir(str(ROOT).lstrip("/")),
            Entry.file(f"{str(ROOT).lstrip('/')}/.git", "gitdir: ../.git/modules/sglang\n"),
            *tree({str(SERVING): "new\n"})[2:],
        ]
    )
    image_def = Image([first, second])
    paths = [SERVING, ROOT / "stale.py", PurePosixPath("/app/a"), PurePosixPath("/app/b")]
    rows = read_everywhere(docker_client, tmp_path, image_def, paths)
    contents = {
        SERVING: b"new\n",
        ROOT / "stale.py": None,
        PurePosixPath("/app/a"): b"B\n",
        PurePosixPath("/app/b"): b"A\n",
    }
    assert all(row[1:] == (image_def.config_digest, NEW_SHA, contents) for row in rows), rows


def test_every_source_tells_the_same_kind_of_path_and_where_links_lead(
    docker_client: Any, tmp_path: Path
) -> None:
    """`kinds` (asked when a patch adds a file): the engine answers from its archive stat
    header, the others from layer records; all four must agree, shape by shape."""
    lower = layer(
        [
            *tree({"/app/pkg/mod.py": "m\n", "/app/version.py": "v\n", "/app/gone.py": "g\n"}),
            Entry.symlink("app/linked", "pkg"),
            Entry.symlink("app/link.py", "pkg/mod.py"),
            Entry("app/pipe", "fifo"),
        ]
    )
    upper = layer([whiteout("/app/gone.py")])
    expected: dict[str, PathKind] = {
        "/app/pkg/mod.py": "file",
        "/app/pkg": "dir",
        "/app/linked": "symlink",  # the path itself is not followed
        "/app/link.py": "symlink",
        "/app/linked/mod.py": "file",  # a symlinked parent is followed
        "/app/linked/new.py": "absent",
        "/app/version.py/inner.py": "absent",  # below a regular file
        "/app/pipe": "other",
        "/app/gone.py": "absent",  # whited out
        "/app/nothing": "absent",
    }
    paths = [PurePosixPath(p) for p in expected]
    with everywhere(docker_client, tmp_path, Image([lower, upper])) as resolved:
        told = {f"{source.name}{i}": source.kinds(image, paths) for i, (source, image) in
                enumerate(resolved)}  # fmt: skip
        through = [PurePosixPath("/app/linked/mod.py"), PurePosixPath("/app/link.py")]
        reached = [
            {p: f.resolved if (f := files[p]) else None for p in through}
            for files in (source.read(image, through) for source, image in resolved)
        ]
    wanted = {PurePosixPath(p): kind for p, kind in expected.items()}
    assert all(kinds == wanted for kinds in told.values()), told
    # a file reached through a symlinked directory reads as via_symlink from every source,
    # so sync refuses to patch through it whichever source read the image
    real = PurePosixPath("/app/pkg/mod.py")
    assert reached == [dict.fromkeys(through, real)] * 4, reached


def test_every_source_follows_forty_links_and_refuses_the_forty_first(
    docker_client: Any, tmp_path: Path
) -> None:
    """The kernel's MAXSYMLINKS (40), whichever source reads the image."""
    links = [Entry.symlink(f"app/l{i}", f"l{i + 1}") for i in range(41)]
    entries = sorted([*links, Entry.file("app/l41", "end\n")], key=lambda e: e.name)
    image_def = Image([layer([Entry.dir("app"), *entries])])  # in byte order, as writers do
    forty, too_many = PurePosixPath("/app/l1"), PurePosixPath("/app/l0")
    with everywhere(docker_client, tmp_path, image_def) as resolved:
        for source, image in resolved:
            found = source.read(image, [forty])[forty]
            assert found is not None and found.content == b"end\n", source.name
            assert found.resolved == PurePosixPath("/app/l41")
            with pytest.raises(UnsafeInputError, match="more than 40"):
                source.read(image, [too_many])
