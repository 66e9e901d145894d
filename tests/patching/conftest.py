"""Real git histories for porting tests: PRs resolved by the real resolver, bases read from
a real mirror, and git merge-file itself as the oracle."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from click.testing import Result
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.patching.port import ParsedChange, PortResult, port
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState, UpstreamChange
from tests.oci import Image, layer, tree, write_oci_layout

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


PAD = "".join(f"# {i}\n" for i in range(8))
BASE = f"a = 1\n{PAD}b = 2\n"  # PR 1 of a `Journey` makes `b = 20`; its nightly has `b = 3`


@dataclass
class Journey:
    """A one-patchset recipe over an OCI-layout nightly, run through the CLI: `sync`, with
    `--conflicts DIR` (`self.conflicts`) where asked, and `resolve`."""

    tmp: Path
    up: PrHistory
    tag: str

    @property
    def conflicts(self) -> Path:
        return self.tmp / "conflicts"

    @property
    def recipe(self) -> Path:
        return self.tmp / "recipe.yaml"

    def sync(self, conflicts: Path | None = None, as_json: bool = True) -> Result:
        args = [
            "sync", "--recipe", str(self.recipe), "--image", f"t/sglang:{self.tag}",
            "--image-source", "layout", "--layout", str(self.tmp / "layout"),
            "--out", str(self.tmp / "out"), *(["--json"] if as_json else []),
        ]  # fmt: skip
        if conflicts is not None:
            args += ["--conflicts", str(conflicts)]
        return CliRunner().invoke(app, args)

    def resolve(self, *extra: str) -> Result:
        args = ["resolve", "--recipe", str(self.recipe), "--conflicts", str(self.conflicts)]
        return CliRunner().invoke(app, [*args, *extra])

    def marked(self) -> Path:
        return self.conflicts / "ps" / "pr-1" / "src" / "m.py"


def journey(
    tmp: Path,
    patchset: str = PATCHSET,
    nightly: dict[str, bytes] | None = None,
    upstream: dict[str, bytes] | None = None,
) -> Journey:
    """PR 1 changes `b = 2` to `b = 20` in m.py; the nightly (the PR's base, with `nightly`'s
    files; by default m.py with `b = 3`) conflicts with it."""
    up = PrHistory(History(tmp / "work", upstream or {"m.py": BASE.encode()}), tmp)
    if upstream is None:
        up.history.squash_pr(1, "Bump b", [Edit("m.py", "b = 2\n", "b = 20\n")])
    url = up.resolver.mirror.url  # publishes the upstream
    commit = up.history.head("HEAD~1" if upstream is None else "HEAD")
    files: dict[str, bytes | str] = {"src/.git/HEAD": commit + "\n"}
    default = {"m.py": BASE.replace("b = 2", "b = 3").encode()}
    files.update({f"src/{name}": data for name, data in (nightly or default).items()})
    tag = f"nightly-20260101-{commit[:8]}"
    write_oci_layout(tmp / "layout", Image(layers=[layer(tree(files))]), tag=tag)
    (tmp / "ps.yaml").write_text(patchset.format(url=url))
    (tmp / "recipe.yaml").write_text(RECIPE.format(model=tmp))
    return Journey(tmp, up, tag)
