"""Driving a compose service without the engine: Docker's health as `up` reads it, the
diagnosis it prints, the wait for health (a fake clock), and the compose command lines
(the SDK's own models over the engine's inspect shape, tests/overlay/containers.py)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from patchkeeper.errors import ServerError, UnreachableError
from patchkeeper.overlay import driver
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.service import Composed
from tests.overlay.containers import (
    EXITED,
    RUNNING,
    Engine,
    client,
    health,
    inspect,
)
from tests.overlay.locks import overlay

LABELS = {"com.docker.compose.project": "demo", "com.docker.compose.service": "sglang"}


def container(engine: Engine, name: str = "web") -> Any:
    return client(engine).containers.get(name)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RUNNING, "running"),  # no healthcheck
        (health("starting"), "starting"),
        (health("healthy", (0, "ok")), "healthy"),
        (health("unhealthy", (1, "refused")), "unhealthy"),
        (RUNNING | {"Status": "created"}, "running"),
        (health("starting") | {"Status": "restarting"}, "starting"),
        (EXITED, "exited"),
        (health("healthy") | {"Status": "paused"}, "exited"),
        (RUNNING | {"Status": "dead"}, "exited"),
        (RUNNING | {"Health": None}, "running"),
    ],
)
def test_health_is_what_docker_reports_now(state: dict[str, Any], expected: str) -> None:
    before = inspect("web", LABELS, EXITED)
    engine = Engine([before, inspect("web", LABELS, state)])
    assert driver.health(container(engine)) == expected  # read after a reload


def test_a_container_that_vanished_from_the_document_reads_as_exited() -> None:
    document = inspect("web", LABELS)
    del document["State"]
    assert driver.health(container(Engine([document]))) == "exited"


def test_the_diagnosis_is_its_last_output_probe_and_exit_code() -> None:
    before = inspect("web", LABELS)
    exited = inspect("web", LABELS, EXITED | {"Health": health("unhealthy")["Health"]})
    exited["State"]["Health"]["Log"] = [
        {"ExitCode": 7, "Output": "first"},
        {"ExitCode": 1, "Output": "  curl: (7) Failed to connect\n"},
    ]
    engine = Engine([before, exited])
    engine.output[before["Id"]] = b"loading weights\n\xff boom\n\n"
    assert driver.diagnosis(container(engine)) == (
        "loading weights\n\ufffd boom\n"
        "health probe's last output (exit 1): curl: (7) Failed to connect\n"
        "container exit code: 3"
    )
    assert engine.log_calls == [{"tail": 60}]
    assert driver.diagnosis(container(engine), lines=2000).startswith("loading weights")
    assert engine.log_calls[-1] == {"tail": 2000}


def test_a_silent_container_and_a_silent_probe_are_said_so() -> None:
    quiet = inspect("web", LABELS, health("starting", (0, "   \n")))
    engine = Engine([quiet])
    assert driver.diagnosis(container(engine)) == (
        "(the container printed nothing)\nhealth probe's last output (exit 0): (nothing)"
    )
    none = inspect("web", LABELS, health("starting") | {"Status": "created"})
    none["State"]["Health"]["Log"] = [{"ExitCode": None, "Output": None}]
    assert driver.diagnosis(container(Engine([none]))) == (
        "(the container printed nothing)\nhealth probe's last output (exit None): (nothing)"
    )


def test_the_diagnosis_without_a_container_or_its_logs() -> None:
    assert driver.diagnosis(None) == "(no container)"
    engine = Engine([inspect("web", LABELS)])
    found = container(engine)
    engine.failure = docker.errors.NotFound("No such container: web")
    assert driver.diagnosis(found) == "(no logs: No such container: web)"


class Clock:
    """`driver`'s `time`: monotonic seconds that only `sleep` moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(driver, "time", made)
    return made


def target(tmp_path: Path) -> Composed:
    store_dir = overlay(tmp_path / "out")
    files = (store_dir / "compose.yaml", store_dir / "compose.override.yaml")
    return Composed(store_dir, read_lock(store_dir), files, "demo", "sglang")


def service(tmp_path: Path, engine: Engine, compose: Compose | None = None) -> Any:
    compose = compose or Compose(("docker", "compose"), 2)
    return driver.ComposeService(client(engine), compose, target(tmp_path))


def test_the_wait_returns_once_healthy(tmp_path: Path, clock: Clock) -> None:
    starting = inspect("web", LABELS, health("starting"))
    engine = Engine(
        [starting, starting, starting, starting, inspect("web", LABELS, health("healthy"))]
    )
    driver.wait_healthy(service(tmp_path, engine), 10)
    assert clock.sleeps == [1.0, 1.0]


def test_without_a_healthcheck_running_is_enough(tmp_path: Path, clock: Clock) -> None:
    driver.wait_healthy(service(tmp_path, Engine([inspect("web", LABELS)])), 10)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (health("unhealthy", (1, "refused")), "unhealthy"),
        (EXITED, "exited"),
    ],
)
def test_an_unhealthy_or_exited_service_fails_at_once_with_its_diagnosis(
    tmp_path: Path, clock: Clock, state: dict[str, Any], said: str
) -> None:
    starting = inspect("web", LABELS, health("starting"))
    engine = Engine([starting, starting, starting, inspect("web", LABELS, state)])
    engine.output[starting["Id"]] = b"Traceback: CUDA out of memory\n"
    with pytest.raises(ServerError) as failed:
        driver.wait_healthy(service(tmp_path, engine), 30)
    assert clock.sleeps == [1.0]
    last = driver.diagnosis(container(engine))
    assert str(failed.value) == f"service sglang {said}; its last output:\n{last}"
    assert last.startswith("Traceback: CUDA out of memory\n")
    assert failed.value.exit_code == 1


def test_a_service_never_healthy_fails_at_the_deadline(tmp_path: Path, clock: Clock) -> None:
    engine = Engine([inspect("web", LABELS, health("starting", (1, "not yet")))])
    with pytest.raises(ServerError) as failed:
        driver.wait_healthy(service(tmp_path, engine), 3)
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert str(failed.value) == (
        "service sglang not healthy after 3 s; its last output:\n"
        "(the container printed nothing)\nhealth probe's last output (exit 1): not yet"
    )


def test_a_service_whose_container_never_appears_fails_at_the_deadline(
    tmp_path: Path, clock: Clock
) -> None:
    with pytest.raises(ServerError) as failed:
        driver.wait_healthy(service(tmp_path, Engine()), 2.5)
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert str(failed.value) == (
        "service sglang not healthy after 2.5 s; its last output:\n(no container)"
    )
    with pytest.raises(ServerError) as failed:
        driver.wait_healthy(service(tmp_path / "b", Engine([inspect("web", LABELS)])), 0)
    assert str(failed.value).startswith("service sglang not healthy after 0 s; its last output:")


def test_the_services_container_is_found_by_its_project_and_service(tmp_path: Path) -> None:
    engine = Engine(
        [inspect("router", LABELS | {"com.docker.compose.service": "router"})],
        [inspect("web", LABELS, EXITED)],
    )
    found = service(tmp_path, engine).container()
    assert found is not None and found.name == "web"
    assert service(tmp_path / "b", Engine([inspect("sglang", None)])).container() is None


FAKE_COMPOSE = """\
#!/bin/sh
printf '%s\\n' "$@" > "$0.argv"
printf '%s' "$PK_STDOUT"
printf '%s' "$PK_STDERR" >&2
exit "${PK_EXIT:-0}"
"""


@pytest.fixture
def fake_compose(tmp_path: Path) -> Path:
    """A compose command line that records its arguments and answers as told."""
    path = tmp_path / "compose"
    path.write_text(FAKE_COMPOSE)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_up_and_rm_address_the_project_and_its_files(tmp_path: Path, fake_compose: Path) -> None:
    driven = service(tmp_path, Engine(), Compose((str(fake_compose), "--ansi", "never"), 2))
    files = driven.target.files
    prefix = ["--ansi", "never", "-p", "demo", "--project-directory", str(files[0].parent)]
    prefix += ["-f", str(files[0]), "-f", str(files[1])]
    argv = Path(f"{fake_compose}.argv")
    driven.up()
    assert argv.read_text().splitlines() == [*prefix, "up", "-d", "--no-deps", "sglang"]
    driven.remove()
    assert argv.read_text().splitlines() == [*prefix, "rm", "-s", "-f", "sglang"]


def test_a_failed_up_is_a_failed_check_and_a_failed_rm_unreachable(
    tmp_path: Path, fake_compose: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driven = service(tmp_path, Engine(), Compose((str(fake_compose),), 2))
    out, err = "o" * 1500 + "|", "e" * 1500 + "!"
    monkeypatch.setenv("PK_STDOUT", out)
    monkeypatch.setenv("PK_STDERR", err)
    monkeypatch.setenv("PK_EXIT", "1")
    with pytest.raises(ServerError) as failed:
        driven.up()
    assert str(failed.value) == f"compose up failed: {(out + err)[-2000:]}"
    assert failed.value.exit_code == 1
    with pytest.raises(UnreachableError) as unreachable:
        driven.remove()
    assert str(unreachable.value) == f"compose rm failed: {err[-1000:]}"
    assert unreachable.value.exit_code == 3
