"""Real git histories for porting tests: PRs resolved by the real resolver, bases read from
a real mirror, and git merge-file itself as the oracle."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import History
from patchkeeper.patching.port import ParsedChange, PortResult, port
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState, UpstreamChange

ROOT = PurePosixPath("/src")

# A one-patchset recipe over an OCI-layout nightly, for the CLI tests of this folder:
# format it with `model=`, and the patchset with `url=` (PR 1 of a `PrHistory`).
RECIPE = """\
image: t/sglang
tags: '^nightly-(?P<date>\\d{{8}})-(?P<sha>[0-9a-f]{{8}})$'
patchsets: [ps.yaml]
service: {{name: sglang, port: 30000, model: {{path: /models/m, host_path: {model}}}, gpus: null}}
"""
PATCHSET = (
    "upstream: {{git: '{url}', branch: main}}\nsource_root: /src\npatches:\n  - pr: 1\n    why: t\n"
)


def image(files: dict[str, bytes | None]) -> dict[PurePosixPath, bytes | None]:
    """Repository paths -> in-image paths under ROOT."""
    return {ROOT / name: data for name, data in files.items()}


def local(parsed: ParsedChange, key: str = "local") -> ParsedChange:
    """The same diff as a local `diff:` patch: blobs unknown, exact matching only."""
    change = parsed.change
    patch = Patch(diff=Path(f"{key}.diff"), why="test", exclude=change.patch.exclude)
    return ParsedChange.of(UpstreamChange("ps", patch, PrState.LOCAL, change.diff), ROOT)


def merge_file(ours: bytes, base: bytes, theirs: bytes, tmp: Path) -> tuple[bytes, int]:
    """The oracle: git merge-file's own output and conflict count."""
    for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
        (tmp / name).write_bytes(data)
    done = subprocess.run(
        ["git", "merge-file", "-p", "ours", "base", "theirs"], cwd=tmp, capture_output=True
    )
    return done.stdout, done.returncode


@dataclass
class PrHistory:
    history: History
    tmp: Path
    _resolver: GitResolver | None = None

    @property
    def resolver(self) -> GitResolver:
        if self._resolver is None:
            url = self.history.publish(self.tmp / f"upstream-{len(self.history.pulls)}.git")
            up = Upstream(git=url, branch="main")
            self._resolver = GitResolver(up, GitMirror(url, self.tmp / "mirrors"))
        return self._resolver

    def change(self, number: int, exclude: tuple[str, ...] = ()) -> ParsedChange:
        patch = Patch(pr=number, why="test", exclude=exclude)
        self.resolver.prepare([patch])
        change = self.resolver.resolve("ps", patch)
        parsed = ParsedChange.of(change, ROOT)
        assert change.base is not None
        return parsed.with_bases(self.resolver.files_at(change.base, parsed.base_paths()))

    def file_at(self, rev: str, path: str) -> bytes:
        show = ["git", "show", f"{rev}:{path}"]
        return subprocess.run(show, cwd=self.history.path, capture_output=True, check=True).stdout

    def port(self, numbers: list[int], files: dict[str, bytes | None]) -> PortResult:
        return port([self.change(n) for n in numbers], image(files))


@pytest.fixture()
def make_upstream(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(files: dict[str, bytes]) -> PrHistory:
        return PrHistory(History(tmp_path / "work", files), tmp_path)

    return make
