"""What sync does with reverted and superseded PRs, on real images (OCI layouts) built
from a real upstream history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import Edit, History
from tests.oci import Image, layer, tree, write_oci_layout

PATCHSET = """\
upstream: {{git: {url}}}
source_root: /src
patches:
  - pr: 1
    why: the validator
  - pr: 2
    why: the fix to b
"""
RECIPE = """\
image: example/sglang
tags: '^nightly-(?P<date>\\d{8})-(?P<sha>[0-9a-f]{8})$'
patchsets: [ps.yaml]
service: {model: {path: /m}, gpus: null}
"""


def _image_of(history: History, commit: str, layout: Path, date: str) -> str:
    """A nightly whose /src is the checkout of `commit`, with its git metadata."""
    files = {
        name: history.git("show", f"{commit}:{name}") + "\n"
        for name in history.git("ls-tree", "--name-only", commit).split()
    }
    files = {f"src/{k}": v for k, v in files.items()}
    files["src/.git/HEAD"] = "ref: refs/heads/main\n"
    files["src/.git/packed-refs"] = f"{commit} refs/heads/main\n"
    tag = f"nightly-{date}-{commit[:8]}"
    write_oci_layout(layout, Image([layer(tree(files))]), tag)
    return tag


def _sync(tmp_path: Path, layout: Path, tag: str) -> dict[str, Any]:
    done = CliRunner().invoke(
        app,
        [
            "sync",
            "--recipe",
            str(tmp_path / "r.yaml"),
            "--image-source",
            "layout",
            "--layout",
            str(layout),
            "--image",
            f"example/sglang:{tag}",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
        env={"PATCHKEEPER_OFFLINE": "1"},
    )
    assert done.exit_code == 0, done.output
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_reverted_is_ported_again_and_superseded_names_its_commit(tmp_path: Path) -> None:
    history = History(tmp_path / "work", {"a.py": b"a1\na2\na3\n", "b.py": b"b1\nb2\n"})
    history.squash_pr(1, "Add validator", [Edit("a.py", "a2\n", "a2\nvalidator()\n")])
    fixed = history.squash_pr(2, "Fix b", [Edit("b.py", "b1\n", "fixed\n")])
    before_revert = history.head()
    history.git("revert", "--no-edit", fixed)
    revert = history.head()
    history.commit("Drop the validator (#3)", [Edit("a.py", "validator()\n", "")])
    remover = history.head()
    url = history.publish(tmp_path / "up.git")
    (tmp_path / "ps.yaml").write_text(PATCHSET.format(url=url))
    (tmp_path / "r.yaml").write_text(RECIPE)
    layout = tmp_path / "layout"
    old = _image_of(history, before_revert, layout, "20260601")
    new = _image_of(history, remover, layout, "20260602")

    early = {p["pr"]: p for p in _sync(tmp_path, layout, old)["patches"]}
    assert early[2]["pr_state"] == "reverted"
    assert (early[2]["state"], early[2]["via"]) == ("upstream", "ancestry")  # not reverted yet
    assert (early[1]["state"], early[1]["via"]) == ("upstream", "ancestry")

    doc = _sync(tmp_path, layout, new)
    late = {p["pr"]: p for p in doc["patches"]}
    assert late[2]["state"] == "applied"  # the revert is in this image: port it again
    assert any(revert in w and "porting it again" in w for w in doc["warnings"])
    assert late[1]["state"] == "upstream"
    assert late[1]["via"] == f"ancestry, since changed by {remover}"
