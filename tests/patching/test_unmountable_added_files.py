"""A file a patch adds is mounted at its path: the directories it sits in must be real ones.

Through the CLI and a real OCI image layout: below a symlinked directory the mount would
land wherever the link points (outside the source root), below a regular file it fails
at container start. Both are refused at sync (exit 2), naming the patch and the path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import Edit
from tests.oci import Entry, Image, layer, tree, write_oci_layout
from tests.patching.conftest import PATCHSET, RECIPE, PrHistory

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]


def sync_adding(
    make_upstream: MakeUpstream, tmp_path: Path, added: str, image_entries: list[Entry]
) -> tuple[int, str]:
    """PR 1 adds `added`; the nightly before it holds `image_entries` next to src/m.py."""
    up = make_upstream({"m.py": b"a = 1\n"})
    up.history.squash_pr(1, "Add a file", [Edit(added, "", "x = 1\n")])
    url = up.resolver.mirror.url  # publishes the upstream
    nightly = up.history.head("HEAD~1")
    files: dict[str, bytes | str] = {"src/m.py": "a = 1\n", "src/.git/HEAD": nightly + "\n"}
    tag = f"nightly-20260101-{nightly[:8]}"
    entries = sorted([*tree(files), *image_entries], key=lambda e: e.name)  # as layers are
    image = Image(layers=[layer(entries)])
    write_oci_layout(tmp_path / "layout", image, tag=tag)
    (tmp_path / "ps.yaml").write_text(PATCHSET.format(url=url))
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(model=tmp_path))
    result = CliRunner().invoke(app, [
        "sync", "--recipe", str(tmp_path / "recipe.yaml"), "--image", f"t/sglang:{tag}",
        "--image-source", "layout", "--layout", str(tmp_path / "layout"),
        "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    return result.exit_code, " ".join(result.output.split())


def test_a_file_added_below_a_symlinked_directory_is_refused(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    entries = [Entry.dir("etc"), Entry.file("etc/hostname", "box\n")]
    entries.append(Entry.symlink("src/sub", "/etc"))
    code, output = sync_adding(make_upstream, tmp_path, "sub/new.py", entries)
    assert code == 2, output
    assert "ps/PR #1: sub/new.py: /src/sub is a symlink in the image" in output, output
    assert "outside /src" in output
    assert not (tmp_path / "out").exists()


def test_a_file_added_below_a_regular_file_is_refused(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    entries = [Entry.file("src/version.py", "__version__ = '1'\n")]
    code, output = sync_adding(make_upstream, tmp_path, "version.py/inner.py", entries)
    assert code == 2, output
    want = "ps/PR #1: version.py/inner.py: /src/version.py is a regular file in the image"
    assert want in output and "fail at container start" in output, output
    assert not (tmp_path / "out").exists()
