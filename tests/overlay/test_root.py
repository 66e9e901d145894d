"""Where a recipe's overlays live: the same answer from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkeeper.config.load import load_recipe
from patchkeeper.overlay.root import overlays_root

RECIPE = """\
image: example.org/sglang
tags: '^n-(?P<date>\\d{{8}})-(?P<sha>[0-9a-f]{{8}})$'
patchsets: [p.yaml]
{out}service: {{name: sglang, model: {{path: /models/m}}}}
"""


def recipe_at(directory: Path, out: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "qwen.yaml"
    path.write_text(RECIPE.format(out=f"out: {out}\n" if out else ""))
    (directory / "p.yaml").write_text("name: p\nupstream: {github: a/b}\npatches: []\n")
    return path


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCHKEEPER_OUT", raising=False)


def test_the_default_is_beside_the_recipe_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(recipe_at(tmp_path / "pk"))
    answers = set()
    for cwd in (tmp_path, tmp_path / "pk", Path("/")):
        monkeypatch.chdir(cwd)
        answers.add(overlays_root(recipe, None))
    assert answers == {tmp_path / "pk" / "overlays"}


def test_out_flag_then_environment_then_the_recipes_out_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(recipe_at(tmp_path / "pk", out="../state"))
    monkeypatch.chdir(tmp_path)
    assert overlays_root(recipe, None) == tmp_path / "pk" / ".." / "state"
    monkeypatch.setenv("PATCHKEEPER_OUT", str(tmp_path / "env"))
    assert overlays_root(recipe, None) == tmp_path / "env"
    assert overlays_root(recipe, Path("given")) == tmp_path / "given"


def test_an_old_overlays_dir_in_the_working_directory_is_used_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = load_recipe(recipe_at(tmp_path / "pk"))
    (tmp_path / "cron" / "overlays" / "qwen").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cron")
    assert overlays_root(recipe, None) == tmp_path / "cron" / "overlays"
    assert f"overlays belong in {tmp_path / 'pk' / 'overlays'}" in capsys.readouterr().err
    (tmp_path / "pk" / "overlays" / "qwen").mkdir(parents=True)  # moved: the recipe's wins
    assert overlays_root(recipe, None) == tmp_path / "pk" / "overlays"


def test_nightly_commits_one_root_so_its_recipes_must_agree(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from patchkeeper.cli import app

    one, two = recipe_at(tmp_path / "a"), recipe_at(tmp_path / "b")
    args = ["nightly", "--recipe", str(one), "--recipe", str(two), "--verify", "none"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "the recipes' overlay roots differ" in done.output and "give --out" in done.output
