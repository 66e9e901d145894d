"""`validate` (offline checks of recipes and patchsets) and `show PATCH` (the ported diff)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.scenario import PROTOCOL, SERVING, SOURCE_ROOT
from patchkeeper.demo.setup import Demo

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
ENGINE = ("--image-source", "engine")  # the demo nightly is only in the local engine


def _copy_demo(demo: Demo, tmp_path: Path) -> tuple[Path, Path]:
    for name in ("demo.yaml", "sglang-demo.yaml"):
        shutil.copy(demo.recipe.parent / name, tmp_path / name)
    return tmp_path / "demo.yaml", tmp_path / "sglang-demo.yaml"


def test_validate_accepts_the_shipped_recipes() -> None:
    recipes = sorted(str(p) for p in (ROOT / "recipes").glob("*.yaml"))
    assert len(recipes) >= 2
    done = runner.invoke(app, ["validate", *recipes, "--json"])
    doc = json.loads(done.stdout)
    assert done.exit_code == 0 and doc["ok"] and doc["schema"] == "patchkeeper.validate/1"
    assert not [p for p in doc["problems"] if p["level"] != "note"]


def test_a_misspelt_witness_fails_validate_and_sync(demo: Demo, tmp_path: Path) -> None:
    recipe, patchset = _copy_demo(demo, tmp_path)
    patchset.write_text(
        patchset.read_text().replace("witness: tool_stream_blocks", "witness: tool_stream")
    )
    done = runner.invoke(app, ["validate", str(recipe), "--json"])
    [problem] = json.loads(done.stdout)["problems"]
    assert done.exit_code == 2 and problem["level"] == "error"
    assert "witness 'tool_stream' is not a smoke check" in problem["message"]
    synced = runner.invoke(app, ["sync", "--recipe", str(recipe), "--out", str(tmp_path / "o")])
    assert synced.exit_code == 2 and "witness 'tool_stream'" in synced.stderr
    assert not (tmp_path / "o").exists()


def test_an_exclude_glob_that_matches_nothing_is_a_warning(demo: Demo, tmp_path: Path) -> None:
    recipe, patchset = _copy_demo(demo, tmp_path)
    # status fills the local mirror; validate then reads the PR's files offline
    assert runner.invoke(app, ["status", "--recipe", str(recipe), "--json", *ENGINE]).exit_code == 0
    text = patchset.read_text().replace(
        "witness: mid_conversation_system",
        "witness: mid_conversation_system\n    exclude: ['test/**', 'python/*/srt/*/anthropic/serving.py']",
    )
    patchset.write_text(text)
    done = runner.invoke(app, ["validate", str(recipe), "--json"])
    doc = json.loads(done.stdout)
    warnings = [p["message"] for p in doc["problems"] if p["level"] == "warning"]
    assert done.exit_code == 0 and doc["ok"]
    assert len(warnings) == 1 and "exclude 'test/**' matches none of the" in warnings[0]


def test_show_prints_the_diff_as_ported_onto_the_image(demo: Demo) -> None:
    done = runner.invoke(app, ["show", "26773", "--recipe", str(demo.recipe), *ENGINE])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    headers = {line.split("/", 1)[1] for line in lines if line.startswith("--- a/")}
    assert headers and headers <= {f"{SOURCE_ROOT}/{p}".lstrip("/") for p in (PROTOCOL, SERVING)}
    assert any(line.startswith("+") and not line.startswith("+++") for line in lines)
    quiet = runner.invoke(app, ["-q", "show", "26773", "--recipe", str(demo.recipe), *ENGINE])
    assert quiet.stdout == done.stdout and quiet.stderr == ""  # -q: no header, no notes
    unknown = runner.invoke(app, ["-q", "show", "999", "--recipe", str(demo.recipe), *ENGINE])
    assert unknown.exit_code == 2
    assert "'999' names no patch of this recipe" in unknown.stderr


def test_verbose_logs_say_what_was_read_from_where(demo: Demo) -> None:
    quiet = runner.invoke(app, ["status", "--recipe", str(demo.recipe), "--json", *ENGINE])
    verbose = runner.invoke(app, ["-v", "status", "--recipe", str(demo.recipe), "--json", *ENGINE])
    assert quiet.exit_code == verbose.exit_code == 0
    assert "patchkeeper: INFO" not in quiet.stderr
    assert f"image {demo.image} from the engine source" in verbose.stderr
    assert f"git fetch {demo.upstream.url}" in verbose.stderr
    assert json.loads(verbose.stdout)["schema"] == "patchkeeper.status/1"  # stdout stays JSON
