"""The boot tier: real SGLang 0.5.23 on CPU with a tiny local model and NEXTN (MTP)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.scenario import SOURCE_ROOT
from patchkeeper.demo.setup import Demo

PROBE = "python/sglang/patchkeeper_probe.py"


def test_boot_tier_serves_the_overlay_with_speculative_decoding(demo: Demo, tmp_path: Path) -> None:
    probe = tmp_path / "probe.diff"
    probe.write_text(f"--- /dev/null\n+++ b/{PROBE}\n@@ -0,0 +1 @@\n+OVERLAID = True\n")
    patchset = tmp_path / "probe.yaml"
    patchset.write_text(
        f"upstream: {{git: {demo.upstream.url}}}\nsource_root: {SOURCE_ROOT}\n"
        f"patches:\n  - diff: {probe}\n    why: proves the overlay is what the server loads\n"
    )
    recipe = tmp_path / "cpu.yaml"
    recipe.write_text(demo.recipe.read_text().replace("[sglang-demo.yaml]", f"[{patchset}]"))
    runner = CliRunner()
    LOCAL = ["--image-source", "engine"]  # the image is in the engine only
    synced = runner.invoke(
        app,
        ["sync", "--recipe", str(recipe), "--out", str(tmp_path / "o"), "--json", *LOCAL],
    )
    assert synced.exit_code == 0, synced.stdout
    overlay = json.loads(synced.stdout)["overlay"]

    done = runner.invoke(
        app, ["verify", "--overlay", overlay, "--tier", "boot", "--runtime", "host", "--json"]
    )
    doc = json.loads(done.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert done.exit_code == 0, checks
    assert (
        checks["overlay_files"]["status"] == "passed"
        and "1 file" in checks["overlay_files"]["reason"]
    )
    for name in (
        "speculative",
        "messages_basic",
        "mid_conversation_system",
        "prefix_cache",
        "concurrency",
        "sse_grammar",
    ):
        assert checks[name]["status"] == "passed", checks[name]
    assert "EAGLE" in checks["speculative"]["reason"] or "NEXTN" in checks["speculative"]["reason"]
