from pathlib import Path

import pytest

from patchkeeper.config import load_patchset, load_recipe
from patchkeeper.config.load import load_patchsets
from patchkeeper.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_recipe_and_patchset_load() -> None:
    recipe = load_recipe(REPO / "recipes/qwen36-27b-fp8-mtp.yaml")
    [patchset] = load_patchsets(recipe)
    assert [p.pr for p in patchset.patches] == [25876, 26773, 24294, 28906, None]
    billing = patchset.patches[-1]
    assert billing.key == "drop-billing-line" and billing.witness == "billing_header_prefix"
    assert billing.diff is not None and billing.diff.is_file()
    assert all(p.why for p in patchset.patches)
    assert patchset.upstream.clone_url == "https://github.com/sgl-project/sglang.git"
    assert recipe.service.port == 8072
    assert "--speculative-algorithm" in recipe.service.args
    assert "--enable-cache-report" in recipe.service.args  # prefix_cache reads what it reports
    assert recipe.service.environment["SGLANG_ENABLE_SPEC_V2"] == "1"
    assert recipe.tag_pattern().fullmatch("nightly-dev-cu13-20260621-1a2b3c4d")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "upstream: {github: sgl-project/sglang}\nsource_root: /x\npatches:\n"
        "  - pr: 1\n    why: ok\n  - pr: -3\n    why: nope\n    witnes: typo\n",
    )
    with pytest.raises(ConfigError) as err:
        load_patchset(path)
    message = str(err.value)
    assert f"{path}:6: patches.1.pr: Input should be greater than 0" in message
    assert "patches.1.witnes: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("upstream: [\n", "malformed YAML"),
        ("- a list\n", "expected a mapping"),
        ("upstream: {branch: main}\nsource_root: /x\npatches: [{pr: 1, why: w}]\n", "give 'github"),
        ("upstream: {git: x}\nsource_root: rel\npatches: [{pr: 1, why: w}]\n", "absolute path"),
        (
            "upstream: {git: x}\nsource_root: /x\npatches: [{pr: 1, diff: a, why: w}]\n",
            "exactly one",
        ),
        (
            "upstream: {git: x}\nsource_root: /x\npatches: [{pr: 1, why: w}, {pr: 1, why: v}]\n",
            "share the id",
        ),
        (
            "upstream: {git: x}\nsource_root: /x\npatches: [{diff: missing.diff, why: w}]\n",
            "not found",
        ),
    ],
)
def test_bad_patchsets_are_refused_clearly(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, "ps.yaml", text)
    with pytest.raises(ConfigError, match=needle) as err:
        load_patchset(path)
    assert str(path) in str(err.value)


def test_recipe_tag_regex_needs_named_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        "image: lmsysorg/sglang\ntags: '^nightly-(\\d+)$'\npatchsets: [p.yaml]\n"
        "service: {model: {path: /m}}\n",
    )
    with pytest.raises(ConfigError, match=r"r.yaml:2: tags: .*named group"):
        load_recipe(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    loaded = load_recipe(recipe)
    assert load_patchsets(loaded)
    assert loaded.tag_pattern().fullmatch("nightly-dev-cu13-20260621-1a2b3c4d")


def test_cpu_recipe_launches_exactly_what_the_boot_tier_runs() -> None:
    from patchkeeper.verify.cpu.env import launch_command, server_args

    service = load_recipe(REPO / "recipes/cpu-tiny-mtp.yaml").service
    assert list(service.args) == server_args(speculative=True)
    _, env = launch_command(Path(__file__), REPO, 1, speculative=True)
    assert {k: v for k, v in service.environment.items() if k != "PYTHONPATH"} == {
        k: v for k, v in env.items() if k != "PYTHONPATH"
    }
    assert service.gpus is None
