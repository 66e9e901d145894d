"""The command line's conventions and its one error boundary."""

from __future__ import annotations

import io
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from patchkeeper import __version__
from patchkeeper.boundary import GuardedGroup, json_requested
from patchkeeper.cli import app
from patchkeeper.errors import ConfigError
from patchkeeper.ui import PipeSafeConsole
from patchkeeper.verify.smoke import ALL

runner = CliRunner()
TOKEN = "ghs_" + "K" * 36
PYTHON_TYPE = re.compile(r"<(bool|str|int|float|path|file|dir)>|list\[")


def invoke(*args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, list(args), **kwargs)


def commands() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_version_flag_and_short_help() -> None:
    done = invoke("--version")
    assert done.exit_code == 0 and done.stdout.strip() == f"patchkeeper {__version__}"
    assert invoke("-h").stdout == invoke("--help").stdout
    assert "--install-completion" in invoke("-h").stdout  # Typer's shell completion is on


@pytest.mark.parametrize("command", commands())
def test_help_shows_no_python_types_and_flags_take_no_value(command: str) -> None:
    done = invoke(command, "-h")
    assert done.exit_code == 0, done.output
    assert not PYTHON_TYPE.search(done.stdout), done.stdout
    assert not re.search(r"--json \S", done.stdout.replace("--json  ", "--json\t"))


def test_a_flag_given_a_value_is_a_usage_error() -> None:
    done = invoke("status", "--recipe", "r.yaml", "--json", "true")
    assert done.exit_code == 2
    assert json.loads(done.stdout)["schema"] == "patchkeeper.error/1"


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["sync", "--recipe", "r.yaml", "--image-source", "disk"], "'auto', 'engine', 'registry'"),
        (["verify", "--overlay", "o", "--tier", "gpu"], "'adapter', 'boot'"),
        (["verify", "--overlay", "o", "--runtime", "vm"], "'auto', 'image', 'host'"),
        (["nightly", "--recipe", "r.yaml", "--verify", "boot"], "'adapter', 'none'"),
        (["smoke", "--base-url", "http://x", "--check", "nope"], ", ".join(ALL)),
    ],
)
def test_enumerated_options_are_validated_and_list_their_choices(
    args: list[str], choices: str
) -> None:
    done = invoke(*args)
    assert done.exit_code == 2
    assert choices in done.stderr


def test_smoke_help_lists_every_check_name() -> None:
    text = " ".join(invoke("smoke", "-h").stdout.split())
    assert all(name in text.replace("- ", "-") for name in ALL)


@pytest.mark.parametrize("count", ["0", "-2"])
def test_status_tags_must_be_positive(count: str) -> None:
    done = invoke("status", "--recipe", "r.yaml", "--tags", count)
    assert done.exit_code == 2 and "--tags" in done.stderr
    as_json = invoke("status", "--recipe", "r.yaml", "--tags", count, "--json")
    doc = json.loads(as_json.stdout)
    assert as_json.exit_code == 2 and doc["exit_code"] == 2 and "--tags" in doc["error"]


def test_usage_errors_are_json_under_json() -> None:
    done = invoke("sync", "--json", "--no-such-option")
    doc = json.loads(done.stdout)
    assert done.exit_code == 2
    assert (
        doc
        == {
            "schema": "patchkeeper.error/1",
            "error": doc["error"],
            "exit_code": 2,
        }
        and "--no-such-option" in doc["error"]
    )


def test_expected_errors_keep_their_code_and_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    done = invoke("sync", "--recipe", str(missing), "--out", str(tmp_path / "o"))
    assert done.exit_code == 2
    assert done.stderr.strip() == f"error: {missing}: file not found"
    as_json = invoke("sync", "--recipe", str(missing), "--json")
    assert json.loads(as_json.stdout)["error"] == f"{missing}: file not found"


def test_json_is_only_a_flag_before_the_double_dash() -> None:
    assert json_requested(["status", "--json"])
    assert not json_requested(["smoke", "--", "--json"])


def _buggy_app() -> typer.Typer:
    """A real Typer app behind the same boundary, with one command that has a bug."""
    buggy = typer.Typer(cls=GuardedGroup)

    @buggy.command()
    def crash(as_json: bool = typer.Option(False, "--json")) -> int:
        return {"token": TOKEN}["missing " + TOKEN]  # type: ignore[return-value]

    @buggy.command()
    def refuse() -> int:
        raise ConfigError("recipe.yaml: bad")

    @buggy.command()
    def returns() -> int:
        return 3

    return buggy


def test_an_unexpected_exception_exits_70_with_one_line_and_a_crash_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    monkeypatch.setenv("PATCHKEEPER_LOG_DIR", str(logs))
    done = runner.invoke(_buggy_app(), ["crash"])
    assert done.exit_code == 70
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unexpected KeyError")
    [log] = logs.iterdir()
    assert f"traceback in {log}" in lines[0]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "def crash" not in text
    assert "in crash" in text and "KeyError" in text
    assert TOKEN not in text and TOKEN not in done.output


def test_an_unexpected_exception_under_json_names_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKEEPER_LOG_DIR", str(tmp_path))
    done = runner.invoke(_buggy_app(), ["crash", "--json"])
    doc = json.loads(done.stdout)
    assert done.exit_code == 70 and doc["exit_code"] == 70
    assert Path(doc["log"]).parent == tmp_path and Path(doc["log"]).is_file()


def test_returned_codes_and_patchkeeper_errors_pass_through_the_boundary() -> None:
    assert runner.invoke(_buggy_app(), ["returns"]).exit_code == 3
    refused = runner.invoke(_buggy_app(), ["refuse"])
    assert refused.exit_code == 2 and refused.stderr.strip() == "error: recipe.yaml: bad"


def test_piped_tables_are_never_clipped() -> None:
    """Not a terminal: a table as wide as its content, whatever COLUMNS says."""
    buffer = io.StringIO()
    console = PipeSafeConsole(file=buffer, width=None)
    table = Table(title="witnesses")
    for column in ("patch", "witness", "verdict"):
        table.add_column(column)
    long_id = "sglang-demo/pr-26773-" + "x" * 150
    table.add_row(long_id, "mid_conversation_system", "proven (fails vanilla, passes overlay)")
    console.print(table)
    text = buffer.getvalue()
    assert long_id in text and "proven (fails vanilla, passes overlay)" in text
    assert "…" not in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _recipe(directory: Path, image: str) -> Path:
    (directory / "p.yaml").write_text(
        "upstream: {git: 'file:///nonexistent'}\nsource_root: /src\n"
        "patches:\n  - {pr: 1, why: a fix}\n"
    )
    recipe = directory / "r.yaml"
    recipe.write_text(
        f"image: {image}\ntags: 'nightly-(?P<date>\\d{{8}})-(?P<sha>[0-9a-f]{{8}})'\n"
        "patchsets: [p.yaml]\nservice: {model: {path: /models/m}}\n"
    )
    return recipe


def test_auto_names_the_daemon_when_the_daemon_and_the_registry_are_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    registry = f"127.0.0.1:{_free_port()}"
    recipe = _recipe(tmp_path, f"{registry}/pk-test/down")
    done = invoke("status", "--recipe", str(recipe), "--json")
    doc = json.loads(done.stdout)
    assert done.exit_code == 3
    assert doc["error"].startswith("Docker daemon unreachable")
    assert f"registry {registry} unreachable" in doc["error"]


def test_nightly_outside_a_git_repository_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(tmp_path, "127.0.0.1:1/pk-test/never-asked")
    done = invoke("nightly", "--recipe", str(recipe), "--verify", "none")
    assert done.exit_code == 2
    assert "not inside a git repository" in done.stderr
    assert f"nightly: {recipe}" not in done.stderr  # no recipe was started


def test_a_14_tag_timeline_keeps_its_patch_and_state_columns_on_a_terminal() -> None:
    """At 200 columns the patch and state columns used to collapse to nothing."""
    from patchkeeper.commands.timeline import _table
    from patchkeeper.config.models import Patch
    from patchkeeper.image.tags import NightlyTag
    from patchkeeper.timeline import Row, Timeline
    from patchkeeper.upstream.model import PrState, UpstreamChange

    tags = tuple(
        NightlyTag(f"202606{day:02}", f"nightly-dev-cu13-202606{day:02}-e887a892", "e887a892")
        for day in range(10, 24)
    )
    change = UpstreamChange("sglang", Patch(pr=24294, why="x"), PrState.MERGED, "")
    row = Row(change, (False,) * 7 + (True,) * 7)
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system=None)
    console.print(_table(Timeline(tags, (None,) * 14, (row,))))
    text = buffer.getvalue()
    assert "#24294" in text and "merged" in text and "…" not in text


def test_the_cli_names_exactly_the_checks_smoke_runs() -> None:
    from patchkeeper.verify.catalog import CHECK_NAMES

    assert list(CHECK_NAMES) == ALL


HEAVY = ("docker", "git", "github", "httpx", "patchkeeper.commands", "patchkeeper.verify.smoke")


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["sync", "--help"]], ids=["version", "help", "sync-help"]
)
def test_starting_the_cli_imports_nothing_heavy(argv: list[str]) -> None:
    """--version, --help and completion start a fresh process each time: no engine,
    git, GitHub or HTTP client is imported before a command body runs."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom patchkeeper.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "patchkeeper.cli" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY[4:])) == []
