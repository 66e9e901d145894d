"""`up` as a transaction and `down` by the engine's truth: pre-flight checks a dry run
runs too, refusals of containers of unknown origin, signals, one run per project,
compose children that die with us, and `--json`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.commands import up as command
from patchkeeper.errors import ConfigError
from patchkeeper.image.engine import EngineSource
from patchkeeper.overlay import drift, driver
from patchkeeper.overlay.lock import read_lock
from patchkeeper.paths import cache_dir
from tests.overlay.locks import overlay
from tests.overlay.nights import NEVER_HEALTHY, Nights, up

runner = CliRunner()


@pytest.mark.parametrize("deadline", ["-5", "0", "nan", "inf"])
def test_a_deadline_that_is_no_positive_number_of_seconds_is_refused(
    tmp_path: Path, deadline: str
) -> None:
    store_dir = overlay(tmp_path / "out")
    done = runner.invoke(app, ["up", "--overlay", str(store_dir), "--deadline", deadline])
    assert done.exit_code == 2, done.output
    assert f"--deadline {float(deadline)}: must be a positive number of seconds" in done.output


def test_a_current_that_is_no_link_is_refused_before_anything_runs(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    current = tmp_path / "out" / "demo" / "current"
    current.write_text("a file someone left here\n")
    done = runner.invoke(app, ["up", "--overlay", str(store_dir), "--no-smoke"])
    assert done.exit_code == 2, done.output
    assert f"{current}: exists and is not a patchkeeper link; move it away" in done.output
    assert current.read_text() == "a file someone left here\n"


def test_one_up_or_down_at_a_time_per_compose_project() -> None:
    path = cache_dir() / "locks" / "compose-project-web.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)), pytest.raises(ConfigError) as refused, driver.serialised("web"):
        pass
    assert "another patchkeeper up or down is working on compose project 'web'" in str(
        refused.value
    )
    with driver.serialised("web"):  # released: the next one goes ahead
        pass


CHILD = """\
import sys
from patchkeeper.overlay.compose_cli import run
run(["/bin/sh", "-c", f"echo $$ > {sys.argv[1]}.tmp && mv {sys.argv[1]}.tmp {sys.argv[1]}; exec sleep 300"])
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _eventually(condition: Any) -> bool:
    for _ in range(300):  # signals and process exits are asynchronous
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_compose_child_dies_when_patchkeeper_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(pidfile)])
    assert _eventually(pidfile.exists)
    pid = int(pidfile.read_text())
    assert _alive(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _eventually(lambda: not _alive(pid))


def test_a_dry_run_refuses_a_foreign_container_as_the_real_run_does(
    nights: Nights, docker_client: Any
) -> None:
    foreign = docker_client.containers.create(
        nights.night1, ["/bin/sleep", "300"], name=nights.container
    )
    for extra in (["--dry-run"], []):
        done = up(nights, "--image", nights.night1, *extra)
        assert done.exit_code == 2, done.output
        assert f"container {nights.container} exists outside compose project" in done.output
        assert "none, not made by compose" in done.output and "--project None" not in done.output
        if extra:
            assert not (nights.out / ".store").exists()  # the dry run wrote no overlay
    assert foreign.id == docker_client.containers.get(nights.container).id  # left alone


def test_recipes_whose_names_map_to_one_project_never_replace_each_other(
    nights: Nights, docker_client: Any
) -> None:
    assert up(nights, "--image", nights.night1).exit_code == 0
    before = docker_client.containers.get(nights.container)
    token = nights.recipe.stem.split("-", 1)[1]
    other = nights.recipe.with_name(f"web.{token}.yaml")  # also compose project web-<token>
    other.write_text(nights.recipe.read_text().replace(nights.container, f"{nights.container}-b"))
    args = ["up", "--recipe", str(other), "--out", str(nights.out), "--no-smoke"]
    done = runner.invoke(app, [*args, "--image", nights.night2, "--deadline", "60"])
    assert done.exit_code == 2, done.output
    assert f"container {nights.container} of compose project 'web-{token}'" in done.output
    assert f"(recipe '{nights.recipe.stem}')" in done.output
    assert docker_client.containers.get(nights.container).id == before.id
    assert docker_client.containers.list(all=True, filters={"name": f"{nights.container}-b"}) == []


def test_sigterm_after_the_recreate_rolls_back_and_exits_1(
    nights: Nights, docker_client: Any
) -> None:
    assert up(nights, "--image", nights.night1).exit_code == 0
    good = docker_client.containers.get(nights.container).image.id
    nights.write_recipe(NEVER_HEALTHY)
    args = ["up", "--recipe", str(nights.recipe), "--out", str(nights.out), "--no-smoke"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchkeeper", *args, "--image", nights.night2, "--deadline", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    night2 = docker_client.images.get(nights.night2).id
    for _ in range(600):  # until the engine runs night 2 (the recreate is done)
        found = docker_client.containers.list(all=True, filters={"name": nights.container})
        if found and found[0].image.id == night2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    assert "up failed: Interrupted SIGTERM" in output and "rolled back:" in output
    container = docker_client.containers.get(nights.container)
    assert container.image.id == good and container.status == "running"


def test_down_with_a_dangling_current_still_removes_its_container(
    nights: Nights, docker_client: Any
) -> None:
    first = up(nights, "--image", nights.night1, "--json")
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    assert document["schema"].startswith("patchkeeper.up/") and document["result"] == "up"
    current = nights.links / "current"
    shutil.rmtree(current.resolve())  # e.g. a gc of an earlier release
    assert current.is_symlink() and not current.exists()
    args = ["down", "--recipe", str(nights.recipe), "--out", str(nights.out), "--json"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["result"] == "removed"
    assert docker_client.containers.list(all=True, filters={"name": nights.container}) == []


def test_sigterm_during_the_drift_guard_leaves_no_never_started_container(
    nights: Nights, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["sync", "--recipe", str(nights.recipe), "--out", str(nights.out)]
    assert runner.invoke(app, [*args, "--image", nights.night1]).exit_code == 0
    lock = read_lock((nights.links / "latest").resolve())
    image = docker_client.images.get(nights.night1).id
    original = EngineSource._stopped_container

    @contextmanager
    def terminated(self: EngineSource, resolved: Any) -> Iterator[Any]:
        with original(self, resolved) as container:
            os.kill(os.getpid(), signal.SIGTERM)  # a cron's `timeout`, mid-read
            yield container

    monkeypatch.setattr(EngineSource, "_stopped_container", terminated)
    with pytest.raises(command.Interrupted), command._terminable():
        drift.guard(docker_client, image, lock)
    assert docker_client.containers.list(all=True, filters={"ancestor": image}) == []
