"""`prune --witness-report` on a real `verify --json` report of the demo nightly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config import load_patchset
from patchkeeper.demo.setup import Demo

runner = CliRunner()


def test_a_witness_passing_on_the_vanilla_nightly_retires_its_patch(
    demo: Demo, tmp_path: Path
) -> None:
    work = tmp_path / "config"
    work.mkdir()
    for name in ("demo.yaml", "sglang-demo.yaml"):
        shutil.copy(demo.recipe.parent / name, work / name)
    local = ["--image-source", "engine"]  # the demo image is in the engine only
    synced = runner.invoke(
        app, ["sync", "--recipe", str(work / "demo.yaml"), "--out", str(tmp_path), "--json", *local]
    )
    assert synced.exit_code == 0, synced.output
    overlay = json.loads(synced.stdout)["overlay"]
    verified = runner.invoke(app, ["verify", "--overlay", overlay, "--runtime", "host", "--json"])
    assert verified.exit_code == 0, verified.output
    report = tmp_path / "verify.json"
    report.write_text(verified.stdout)
    no_tags = tmp_path / "tags.txt"
    no_tags.write_text("")  # no nightly tracked: only the witness evidence counts
    prune = ["prune", "--recipe", str(work / "demo.yaml"), "--tags-from", str(no_tags)]
    prune += ["--witness-report", str(report)]
    dry = runner.invoke(app, [*prune, "--json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)  # one document: the warning is in it, not before it
    assert doc["schema"] == "patchkeeper.prune/1"
    assert [(r["patchset"], r["reason"]) for r in doc["retire"]] == [
        ("sglang-demo", f"witness tool_stream_blocks already passes on vanilla {demo.image}")
    ]
    assert doc["written"] == [] and doc["tags"] == 0
    assert "retiring nothing by ancestry" in doc["warnings"][0]
    assert not load_patchset(work / "sglang-demo.yaml").retired  # a dry run writes nothing
    pruned = runner.invoke(app, [*prune, "--write"])
    assert pruned.exit_code == 0, pruned.output
    patchset = load_patchset(work / "sglang-demo.yaml")
    assert [p.pr for p in patchset.patches] == [26773, 28906, 25876]
    [retired] = patchset.retired
    assert retired.reason == (f"witness tool_stream_blocks already passes on vanilla {demo.image}")
