"""A user's week, walked through the CLI with real Compose v2 on the real engine.

The user runs a compose service with a hand-patched `protocol.py` mounted read-only,
`ports: ["P:P"]` and `--port P` in its command, and a healthcheck: the issue's file,
less `runtime: nvidia` and `ulimits.memlock` (this machine has no GPU, and an
unprivileged engine may refuse an unlimited memlock). The "server" is busybox httpd
started by `/serve.sh` inside each nightly image, so a night can be broken in the ways
nights break: never healthy, or healthy inside while its published port answers nothing.

Each step runs from another working directory (a cron runs from `$HOME`), and after
each the engine's truth is asserted: which image the container runs, what it mounts at
the patched path and the bytes there, which compose project owns it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from typer.testing import CliRunner, Result

from patchkeeper.cli import app
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import PROTOCOL, SOURCE_ROOT
from patchkeeper.demo.setup import Demo
from patchkeeper.image.identity import REVISION_LABEL
from patchkeeper.verify.runtime import free_port
from tests.compose_fixtures import installed, remove_project
from tests.names import unique

runner = CliRunner()
SERVICE = "sglang-qwen36"
TARGET = f"{SOURCE_ROOT}/{PROTOCOL}"

SERVE = """\
port=30000
while test $# -gt 0; do if test "$1" = --port; then port=$2; fi; shift; done
exec /bin/busybox httpd -f -p {bind}$port -h /www
"""
NEVER_HEALTHY = "exec /bin/sleep 3600\n"

USER_COMPOSE = """\
name: {project}
services:
  {service}:
    image: {image}
    container_name: {container}
    environment: [HF_HOME=/models/hf_cache]
    volumes:
      - {models}:/models
      - ./sglang-patched-protocol.py:{target}:ro
      - ./chat_template_no_thinking.jinja:/models/chat_template_no_thinking.jinja:ro
    ports: ["{port}:{port}"]
    ipc: host
    init: true
    command: [/bin/sh, /serve.sh, --model-path, /models/tiny, --port, "{port}"]
    healthcheck:
      test: [CMD, /bin/wget, -q, -O, /dev/null, "http://127.0.0.1:{port}/health"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 0s
    restart: "no"
"""


@dataclass(frozen=True)
class Week:
    home: Path  # the user's compose directory
    compose_file: Path
    recipe: Path
    project: str
    container: str
    port: int
    nights: dict[str, str]  # night name -> image reference
    vanilla: bytes
    fixed: bytes
    root: Path  # where directories to run each step from are made

    def somewhere(self, name: str) -> Path:
        place = self.root / "cwd" / name
        place.mkdir(parents=True, exist_ok=True)
        return place


def _nightly(
    client: Any, demo: Demo, tmp: Path, reference: str, serve: str, protocol: bytes | None
) -> str:
    tree = tmp / reference.rsplit(":", 1)[1]
    shutil.copytree(demo.recipe.parent / "source", tree, symlinks=True)
    if protocol is not None:
        (tree / PROTOCOL).write_bytes(protocol)
    files = {
        "/serve.sh": serve.encode(),
        "/www/health": b"ok\n",
        "/www/v1/models": json.dumps({"data": [{"id": "tiny"}]}).encode(),
    }
    labels = {REVISION_LABEL: demo.upstream.nightly_commit}
    build_image(client, reference, {str(SOURCE_ROOT): tree}, files, labels=labels)
    return reference


@pytest.fixture
def week(demo: Demo, docker_client: Any, tmp_path: Path) -> Iterator[Week]:
    repository = unique("pk-test/week")
    vanilla = (demo.recipe.parent / "source" / PROTOCOL).read_bytes()
    fixed = vanilla.replace(
        b'    role: Literal["user", "assistant"]\n',
        b'    role: Literal["user", "assistant", "system"]\n',
    )
    assert fixed != vanilla
    date, sha = "20260621", demo.image.rsplit("-", 1)[1]
    nights: dict[str, str] = {}
    plan = {
        "one": (SERVE.format(bind=""), None),
        "two": (SERVE.format(bind=""), fixed),  # upstream merged the fix
        "three": (NEVER_HEALTHY, fixed),
        "four": (SERVE.format(bind="127.0.0.1:"), fixed),  # healthy inside only
    }
    for day, (night, (serve, protocol)) in enumerate(plan.items(), start=1):
        reference = f"{repository}:nightly-dev-cu13-{int(date) + day}-{sha}"
        nights[night] = _nightly(docker_client, demo, tmp_path, reference, serve, protocol)
    home = tmp_path / "home" / "qwen"
    home.mkdir(parents=True)
    (home / "sglang-patched-protocol.py").write_bytes(fixed)
    (home / "chat_template_no_thinking.jinja").write_text("{{ messages }}")
    port, project, container = free_port(), unique("pk-week"), unique("pk-week")
    compose_file = home / "compose.yaml"
    compose_file.write_text(
        USER_COMPOSE.format(
            project=project,
            service=SERVICE,
            image=nights["one"],
            container=container,
            models=tmp_path,
            target=TARGET,
            port=port,
        )
    )
    recipe = home / "pk" / f"{project}.yaml"
    yield Week(
        home, compose_file, recipe, project, container, port, nights, vanilla, fixed, tmp_path
    )
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(container).remove(force=True)
    remove_project(docker_client, project)
    for reference in nights.values():
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference, force=True)


def cli(where: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """The command line, run from `where` as the user (or their cron) would."""
    monkeypatch.chdir(where)
    return runner.invoke(app, list(args))


def up(week: Week, night: str, where: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Result:
    args = ["up", "--recipe", str(week.recipe), "--image", week.nights[night]]
    args += ["--image-source", "engine", "--check", "models_list", "--deadline", "30"]
    return cli(where, monkeypatch, *args, *extra)


@dataclass(frozen=True)
class Truth:
    image: str
    project: str
    protocol: bytes  # the bytes at the patched path inside the container
    mounted_from: str | None  # the host source bound at that path


def truth(client: Any, week: Week) -> Truth:
    container = client.containers.get(week.container)
    assert container.status == "running"
    code, output = container.exec_run(["/bin/cat", TARGET])
    assert code == 0, output
    source = next(
        (m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == TARGET), None
    )
    return Truth(
        container.attrs["Image"],
        container.labels["com.docker.compose.project"],
        output,
        source,
    )


def image_id(client: Any, reference: str) -> str:
    return str(client.images.get(reference).id)


def store(week: Week) -> set[str]:
    root = week.recipe.parent / "overlays" / ".store"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def links(week: Week) -> dict[str, str]:
    directory = week.recipe.parent / "overlays" / week.recipe.stem
    if not directory.is_dir():
        return {}
    return {p.name: str(p.resolve()) for p in directory.iterdir() if p.is_symlink()}


def test_a_users_week_adopt_then_nightly_up_from_a_cron_then_down(
    week: Week, demo: Demo, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = installed(2)
    monkeypatch.setenv("PATCHKEEPER_COMPOSE", " ".join(compose.argv))
    monkeypatch.delenv("PATCHKEEPER_OUT", raising=False)
    cron = week.somewhere("cron-home")  # every nightly `up` runs from here, as a cron does

    # Today: the user's own service, brought up by hand, with their hand patch.
    argv = [*compose.argv, "-f", str(week.compose_file), "up", "-d"]
    subprocess.run(argv, cwd=week.home, check=True, capture_output=True)
    today = truth(docker_client, week)
    assert today.mounted_from == str(week.home / "sglang-patched-protocol.py")
    assert today.protocol == week.fixed and today.project == week.project

    # Adopt it.
    adopt = ["init", "--from-compose", str(week.compose_file), "--service", SERVICE]
    adopt += ["--git", demo.upstream.url, "--dir", str(week.recipe.parent)]
    adopted = cli(week.somewhere("adopt"), monkeypatch, *adopt, "--name", week.recipe.stem)
    assert adopted.exit_code == 0, adopted.output
    assert truth(docker_client, week) == today  # adopting changes nothing that runs

    valid = cli(week.somewhere("ci"), monkeypatch, "validate", str(week.recipe))
    assert valid.exit_code == 0, valid.output

    # A first night that never gets healthy: their own service comes back, as it was.
    bad = up(week, "three", cron, monkeypatch)
    assert bad.exit_code == 1, bad.output
    assert "rolled back: sglang-qwen36 healthy on your own compose file (no overlay)" in bad.output
    assert truth(docker_client, week) == today
    assert "current" not in links(week)

    # Night 1: the overlay replaces the hand patch; the state lands beside the recipe.
    first = up(week, "one", cron, monkeypatch)
    assert first.exit_code == 0, first.output
    assert "your own compose service was running, without an overlay" in first.output
    assert "smoke models_list: passed" in first.output
    one = truth(docker_client, week)
    current = links(week)["current"]
    assert one.image == image_id(docker_client, week.nights["one"])
    assert one.project == week.project and one.protocol == week.fixed
    assert one.mounted_from == f"{current}/rootfs{TARGET}"
    assert not (cron / "overlays").exists()

    # By hand, out of habit: plain `docker compose up -d` brings the hand patch back.
    subprocess.run(argv, cwd=week.home, check=True, capture_output=True)
    assert truth(docker_client, week).mounted_from == str(week.home / "sglang-patched-protocol.py")
    stored, linked_before = store(week), links(week)
    dry = up(week, "two", week.somewhere("anywhere"), monkeypatch, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"mounts {week.home}/sglang-patched-protocol.py at {TARGET}, not this overlay" in (
        dry.output
    )
    assert f"COMPOSE_PROJECT_NAME={week.project} COMPOSE_FILE={week.compose_file}:" in dry.output
    assert "dry run: would recreate" in dry.output
    assert (store(week), links(week)) == (stored, linked_before)  # a dry run writes nothing
    assert truth(docker_client, week).mounted_from == str(week.home / "sglang-patched-protocol.py")

    # Night 2 already contains the fix: the image's own file, whatever was mounted before.
    second = up(week, "two", cron, monkeypatch)
    assert second.exit_code == 0, second.output
    two = truth(docker_client, week)
    assert two.image == image_id(docker_client, week.nights["two"])
    assert two.project == week.project and two.protocol == week.fixed
    assert two.mounted_from is None  # yesterday's hand patch is unmounted, not left in place
    good = links(week)["current"]
    assert good != current

    # Night 3 never gets healthy: back to night 2, with the probe's words and the logs kept.
    third = up(week, "three", week.somewhere("elsewhere"), monkeypatch)
    assert third.exit_code == 1, third.output
    assert "unhealthy; its last output:" in third.output
    assert "health probe's last output (exit 1):" in third.output
    assert "rolled back:" in third.output
    kept = [p for p in (week.recipe.parent / "overlays" / ".store").glob("*/up-failed-*.log")]
    assert kept and "health probe's last output" in kept[0].read_text()
    assert truth(docker_client, week) == two
    assert links(week)["current"] == good

    # Night 4 is healthy inside, but its published port answers nothing: back to night 2.
    fourth = up(week, "four", cron, monkeypatch)
    assert fourth.exit_code == 1, fourth.output
    assert f"http://127.0.0.1:{week.port} unreachable" in fourth.output
    assert "rolled back:" in fourth.output
    assert truth(docker_client, week) == two
    assert links(week)["current"] == good

    # Down removes the user's container in the user's project, from anywhere.
    gone = cli(week.somewhere("down"), monkeypatch, "down", "--recipe", str(week.recipe))
    assert gone.exit_code == 0, gone.output
    assert f"down: removed {week.container}" in gone.output
    label = f"com.docker.compose.project={week.project}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(week.container)
