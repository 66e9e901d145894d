"""The upstream blobs local diffs name, found in a real partial mirror fetched over HTTP."""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.config.models import Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import UpstreamBlob
from tests.git_http import GitHttpServer
from tests.upstream.blob_ids import blob_id, colliding

M, OTHER = PurePosixPath("pkg/m.py"), PurePosixPath("pkg/other.py")


def _missing(mirror: Path) -> set[str]:
    listing = subprocess.run(
        ["git", "-C", str(mirror), "rev-list", "--objects", "--missing=print", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line[1:] for line in listing.splitlines() if line.startswith("?")}


@dataclass
class Served:
    history: History
    server: GitHttpServer
    resolver: GitResolver

    def fetches(self) -> int:
        """Fetches served so far (each starts with one ref advertisement)."""
        return sum(1 for path, ok in self.server.requests if ok and "/info/refs" in path)


V1, V2 = colliding(4)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    """pkg/m.py in three versions (V1, V2: ids sharing 4 hex digits), pkg/other.py in one,
    served by git http-backend behind Basic auth; the mirror has fetched the branch only."""
    history = History(tmp_path / "work", {"pkg/m.py": V1, "pkg/other.py": b"other\n"})
    history.commit("V2", [Edit("pkg/m.py", V1.decode(), V2.decode())])
    history.squash_pr(1, "V3", [Edit("pkg/m.py", V2.decode(), "value = three\n")])
    history.publish(tmp_path / "served" / "up.git")
    with GitHttpServer(tmp_path / "served", "bot", "s3cret-pass") as server:
        url = server.url("up.git", "bot:s3cret-pass")
        resolver = GitResolver(Upstream(git=url), GitMirror(url, tmp_path / "mirrors"))
        resolver.prepare([])
        yield Served(history, server, resolver)


def test_full_and_abbreviated_ids_are_fetched_in_one_request(served: Served) -> None:
    mirror = served.resolver.mirror.path
    full, other = blob_id(V2), blob_id(b"other\n")
    assert {full, other} <= _missing(mirror)  # a blobless mirror: nothing fetched yet
    before = served.fetches()
    named = [(M, full), (OTHER, other[:7])]
    found = served.resolver.blobs(named)
    assert found == {(M, full): UpstreamBlob(V2), (OTHER, other[:7]): UpstreamBlob(b"other\n")}
    assert served.fetches() == before + 1
    assert not {full, other} & _missing(mirror)
    assert served.resolver.blobs(named) == found  # now from the mirror alone
    assert served.fetches() == before + 1


def test_a_blob_upstream_never_had_is_not_found_and_not_fetched(served: Served) -> None:
    before = served.fetches()
    stranger = blob_id(b"value = 4\n")
    other = blob_id(b"other\n")  # upstream's, but at another path
    found = served.resolver.blobs([(M, stranger), (M, other), (M, stranger[:7])])
    assert set(found.values()) == {UpstreamBlob(None)}
    assert served.fetches() == before


def test_an_ambiguous_abbreviated_id_names_its_candidates(served: Served) -> None:
    one, two = sorted((blob_id(V1), blob_id(V2)))
    common = next(i for i in range(40) if one[i] != two[i])
    [ambiguous] = served.resolver.blobs([(M, one[:common])]).values()
    assert ambiguous.content is None
    assert f"{one}, {two}" in ambiguous.problem and "ambiguous" in ambiguous.problem
    longer = served.resolver.blobs([(M, two[: common + 1])])
    assert longer == {(M, two[: common + 1]): UpstreamBlob(V2 if blob_id(V2) == two else V1)}


def test_a_mirror_copy_that_is_not_the_blob_is_refused(served: Served) -> None:
    mirror = served.resolver.mirror.path
    wanted = blob_id(V1)
    assert wanted in _missing(mirror)
    lie = b"value = 666\n"  # planted under V1's name: git itself reads it back as V1
    loose = mirror / "objects" / wanted[:2] / wanted[2:]
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(zlib.compress(b"blob %d\0" % len(lie) + lie))
    shown = subprocess.run(
        ["git", "-C", str(mirror), "cat-file", "blob", wanted], capture_output=True, check=True
    )
    assert shown.stdout == lie
    [found] = served.resolver.blobs([(M, wanted[:7])]).values()
    assert found.content is None
    assert f"the mirror's copy of blob {wanted} is not that blob" in found.problem
    assert str(mirror) in found.problem
