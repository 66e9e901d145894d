"""`patchkeeper init --from-compose`: a user's compose file adopted whole, read as
Compose reads it, against the demo's nightly image in the real engine."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from patchkeeper.cli import app
from patchkeeper.commands.init import HALF_PORT, make_diff
from patchkeeper.config.load import load_recipe
from patchkeeper.demo.scenario import ADAPTER, PROTOCOL, SERVING, SOURCE_ROOT, adapter_files
from patchkeeper.demo.setup import Demo
from patchkeeper.errors import ConfigError
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.patching.diff import parse_diff
from patchkeeper.patching.hunks import HunkStatus, apply_exact, split_lines

runner = CliRunner()

PATCHED = (
    adapter_files()[PROTOCOL]
    .decode()
    .replace(
        '    role: Literal["user", "assistant"]\n',
        '    role: Literal["user", "assistant", "system"]\n',
    )
)
TARGET = f"{SOURCE_ROOT}/{PROTOCOL}"

# The shape of the service; `runtime: nvidia` dropped (no GPU runtime here).
COMPOSE = """\
services:
  sglang-qwen36:
    image: {image}
    volumes:
      - {models}:/models
      - ./sglang-patched-protocol.py:{target}:ro
      - ./chat_template_no_thinking.jinja:/models/chat_template_no_thinking.jinja:ro
{extra_volumes}    ports: ["8072:8072"]
    command: >
      python3 -m sglang.launch_server --model-path /models/Qwen3.6-27B-FP8 --port 8072
      --chat-template /models/chat_template_no_thinking.jinja
"""


def home_with(tmp_path: Path, image: str, extra_volumes: str = "", **files: bytes) -> Path:
    home = tmp_path / "user"
    home.mkdir(exist_ok=True)
    (home / "sglang-patched-protocol.py").write_text(PATCHED)
    (home / "chat_template_no_thinking.jinja").write_text("{{ messages }}")
    for name, data in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_bytes(data)
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    file = home / "compose.yaml"
    file.write_text(
        COMPOSE.format(image=image, models=models, target=TARGET, extra_volumes=extra_volumes)
    )
    return file


def init(file: Path, demo: Demo, *extra: str) -> Result:
    args = ["init", "--from-compose", str(file), "--service", "sglang-qwen36"]
    args += ["--git", demo.upstream.url, "--dir", str(file.parent / "pk"), "--name", "qwen36"]
    return runner.invoke(app, [*args, *extra])


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_pr_named_by_the_in_container_path_the_compose_file_mounts(
    demo: Demo, tmp_path: Path
) -> None:
    file = home_with(tmp_path, demo.image)
    done = init(file, demo, "--pr", f"{TARGET}=26773")
    assert done.exit_code == 0, done.output
    patchset = load(file.parent / "pk" / "qwen36-patches.yaml")
    assert [p.get("pr") for p in patchset["patches"]] == [26773]
    assert HALF_PORT not in done.output


def test_an_unknown_pr_path_lists_the_mounted_candidates(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    done = init(file, demo, "--pr", "python/sglang/nowhere.py=26773")
    assert done.exit_code == 2, done.output
    assert "--pr python/sglang/nowhere.py=26773: no file is mounted there" in done.output
    assert f"{TARGET} (repository path {PROTOCOL})" in done.output
    assert not (file.parent / "pk").exists()


def test_a_hand_patch_without_pr_warns_it_may_be_half_a_fix(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    done = init(file, demo, "--json")
    assert done.exit_code == 0, done.output
    assert f"{TARGET}: kept as a local diff; {HALF_PORT}" in done.output
    document = json.loads(done.stdout)
    assert document["schema"] == "patchkeeper.init/1"
    assert document["warnings"] == [f"{TARGET}: kept as a local diff; {HALF_PORT}"]
    assert document["diffs"] == [str(file.parent / "pk" / "qwen36-protocol.diff")]


def test_port_chat_template_and_adopted_paths_are_recorded(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    done = init(file, demo, "--pr", f"{PROTOCOL}=26773")
    assert done.exit_code == 0, done.output
    recipe = load_recipe(file.parent / "pk" / "qwen36.yaml")
    assert recipe.service.port == 8072
    assert recipe.service.chat_template == file.parent / "chat_template_no_thinking.jinja"
    assert recipe.service.adopted == (PurePosixPath(TARGET),)


def test_the_port_is_the_published_one_else_the_commands(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    text = file.read_text().replace('["8072:8072"]', '["18072:8072", "9000:9000"]')
    file.write_text(text)
    assert init(file, demo).exit_code == 0
    assert load(file.parent / "pk" / "qwen36.yaml")["service"]["port"] == 18072
    file.write_text(text.replace('    ports: ["18072:8072", "9000:9000"]\n', ""))
    assert init(file, demo, "--name", "other").exit_code == 0
    assert load(file.parent / "pk" / "other.yaml")["service"]["port"] == 8072


def test_image_variables_and_relative_long_binds_are_read_as_compose_reads_them(
    demo: Demo, tmp_path: Path, compose: Compose
) -> None:
    repository, tag = demo.image.rsplit(":", 1)
    long_bind = f"      - {{type: bind, source: patches/m.py, target: {SOURCE_ROOT}/{SERVING}}}\n"
    serving = adapter_files()[SERVING] + b"# mine\n"
    file = home_with(
        tmp_path, f"{repository}:${{SGLANG_TAG}}", long_bind, **{"patches/m.py": serving}
    )
    (file.parent / ".env").write_text(f"SGLANG_TAG={tag}\n")
    done = init(file, demo)
    assert done.exit_code == 0, done.output
    assert f"{SOURCE_ROOT}/{SERVING}: {file.parent}/patches/m.py differs" in done.output
    recipe = load(file.parent / "pk" / "qwen36.yaml")
    assert recipe["image"] == repository
    assert recipe["service"]["adopted"] == [TARGET, f"{SOURCE_ROOT}/{SERVING}"]


def test_an_unset_image_variable_names_the_file_and_field(demo: Demo, tmp_path: Path) -> None:
    repository = demo.image.rsplit(":", 1)[0]
    file = home_with(tmp_path, f"{repository}:${{SGLANG_TAG_UNSET_IN_TESTS}}")
    done = init(file, demo)
    assert done.exit_code == 2, done.output
    assert f"{file}: services.sglang-qwen36.image: '{repository}:'" in done.output


def test_two_mounted_files_with_one_basename_keep_both_hand_patches(
    demo: Demo, tmp_path: Path
) -> None:
    extra = (
        f"      - ./a/__init__.py:{SOURCE_ROOT}/{ADAPTER}/__init__.py\n"
        f"      - ./b/__init__.py:{SOURCE_ROOT}/python/sglang/__init__.py\n"
    )
    files = {"a/__init__.py": b"A = 1\n", "b/__init__.py": b"B = 2\n"}
    file = home_with(tmp_path, demo.image, extra, **files)
    done = init(file, demo, "--pr", f"{PROTOCOL}=26773")
    assert done.exit_code == 0, done.output
    diffs = [p["diff"] for p in load(file.parent / "pk" / "qwen36-patches.yaml")["patches"][1:]]
    assert diffs == ["qwen36-anthropic-__init__.diff", "qwen36-sglang-__init__.diff"]
    assert "+A = 1" in (file.parent / "pk" / diffs[0]).read_text()
    assert "+B = 2" in (file.parent / "pk" / diffs[1]).read_text()


def test_a_yaml_alias_bomb_is_refused_before_anything_expands_it(
    demo: Demo, tmp_path: Path
) -> None:
    file = home_with(tmp_path, demo.image)
    bomb = "".join(
        f"x-{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
        for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    file.write_text(bomb + file.read_text())
    done = init(file, demo)
    assert done.exit_code == 2, done.output
    assert f"{file}: its YAML aliases expand to over" in done.output


def test_a_non_utf8_mounted_file_is_bad_input_naming_it(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    (file.parent / "sglang-patched-protocol.py").write_bytes(b"x = '\xff'\n")
    done = init(file, demo)
    assert done.exit_code == 2, done.output
    assert f"{file.parent}/sglang-patched-protocol.py (mounted at {TARGET}): not UTF-8" in (
        done.output
    )


def test_a_service_that_extends_another_is_adopted(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    text = file.read_text().replace("  sglang-qwen36:\n", "  base:\n")
    file.write_text(text + "  sglang-qwen36:\n    extends: base\n")
    done = init(file, demo)
    assert done.exit_code == 0, done.output
    assert load(file.parent / "pk" / "qwen36.yaml")["image"] == demo.image.rsplit(":", 1)[0]


def test_a_recipe_name_with_a_space_names_the_option(demo: Demo, tmp_path: Path) -> None:
    file = home_with(tmp_path, demo.image)
    done = init(file, demo, "--name", "my qwen")
    assert done.exit_code == 2, done.output
    assert "--name 'my qwen': the recipe's file name is its name" in done.output


def test_a_recipe_file_named_with_a_space_says_the_file_name_is_the_name(
    tmp_path: Path,
) -> None:
    recipe = tmp_path / "my qwen.yaml"
    recipe.write_text("image: x\n")
    with pytest.raises(ConfigError, match="the file name 'my qwen' is the recipe's name"):
        load_recipe(recipe)


def test_an_append_after_recurring_lines_ports_back_onto_its_own_image(
    sglang_0513_files: dict[str, bytes],
) -> None:
    vanilla = sglang_0513_files[SERVING].decode()
    patched = vanilla + "\n\ndef extra():\n    return 1\n"
    text = make_diff(vanilla, patched, PurePosixPath(SERVING))
    (file,) = parse_diff(text, SERVING)
    result, outcomes = apply_exact(split_lines(vanilla), file.hunks)
    assert [o.status for o in outcomes] == [HunkStatus.APPLIED]
    assert "".join(result) == patched


LINES = st.lists(st.sampled_from(["a\n", "b\n", "    )\n", "\n", "c"]), max_size=30)


@settings(max_examples=150, deadline=None)
@given(LINES, LINES)
def test_every_diff_init_writes_ports_back_onto_its_vanilla(old: list[str], new: list[str]) -> None:
    vanilla, patched = "".join(old), "".join(new)
    try:
        text = make_diff(vanilla, patched, PurePosixPath("x.py"))
    except ConfigError as err:  # the whole file as context is ambiguous still
        assert str(err).startswith("x.py: the hand patch does not port back")
        return
    if vanilla == patched:
        assert text == ""
        return
    (file,) = parse_diff(text, "x.py")
    result, outcomes = apply_exact(split_lines(vanilla), file.hunks)
    assert all(o.status is HunkStatus.APPLIED for o in outcomes)
    assert "".join(result) == patched
