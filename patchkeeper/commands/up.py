"""`patchkeeper up` / `down`: move the running server to an overlay, or roll it back.

up: sync (or take `--overlay`), pull the pinned digest when the engine lacks it, the
drift guard, recreate the service under its stable compose project, wait for health
within a deadline, a quick smoke subset; on any failure recreate the service from the
previous overlay and exit 1. `<out>/<recipe>/current` names what `up` last proved,
`previous` the one before: the rollback target.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker.errors

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.commands.sync import write
from patchkeeper.config.load import load_recipe, read_yaml
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError, ServerError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.overlay import compose_cli, drift
from patchkeeper.overlay.compose import flag, service_command
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.root import overlays_root
from patchkeeper.overlay.service import Composed, UserCompose, composed, links_of, record_override
from patchkeeper.overlay.write import BASE_COMPOSE, CURRENT, PREVIOUS, linked, point
from patchkeeper.report import print_table
from patchkeeper.ui import err_console, out_console
from patchkeeper.verify.image_runtime import local_image, pull_image
from patchkeeper.verify.smoke import ALL, SmokeOptions, Status, run_suite

QUICK_CHECKS = ["models_list", "messages_basic"]


def _say(line: str, error: bool = False) -> None:
    """One unwrapped line (paths and image names stay greppable in logs)."""
    (err_console if error else out_console).print(
        line, soft_wrap=True, markup=False, highlight=False
    )


LOG_LINES = 60


@dataclass(frozen=True)
class UpOptions:
    """What the command line chose besides the recipe or overlay."""

    out: Path | None = None  # None: the recipe's root (overlay/root.py)
    user: UserCompose | None = None
    project: str | None = None
    deadline_s: float = 900.0
    checks: tuple[str, ...] = tuple(QUICK_CHECKS)
    url: str | None = None
    dry_run: bool = False

    def with_run(self, deadline_s: float, checks: tuple[str, ...], url: str | None) -> UpOptions:
        return replace(self, deadline_s=deadline_s, checks=checks, url=url)


def options(
    out: Path | None, compose: Path | None, service: str | None, project: str | None, dry_run: bool
) -> UpOptions:
    if (compose is None) != (service is None):
        raise ConfigError("give --compose FILE and --service NAME together")
    user = UserCompose(compose, service) if compose and service else None
    return UpOptions(out=out, user=user, project=project, dry_run=dry_run)


def changes(old: Lock | None, new: Lock) -> list[str]:
    """What moving from `old` to `new` changes, one line each (image, patches, files)."""
    if old is None:
        return [f"image:   {new.image.ref} ({new.image.pinned})  (nothing was running)"]
    lines = []
    if (old.image.ref, old.image.pinned) != (new.image.ref, new.image.pinned):
        lines.append(f"image:   {old.image.ref} -> {new.image.ref} ({new.image.pinned})")
    before = {p.id: p.state for p in old.patches}
    after = {p.id: p.state for p in new.patches}
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            lines.append(f"patch:   {key}: {before.get(key, '-')} -> {after.get(key, '-')}")
    was = {f.path: f.patched_sha256 for f in old.files}
    now = {f.path: f.patched_sha256 for f in new.files}
    for path in sorted(was.keys() | now.keys()):
        if was.get(path) != now.get(path):
            short = [s[:12] if s else "-" for s in (was.get(path), now.get(path))]
            lines.append(f"file:    {path}: {short[0]} -> {short[1]}")
    if old.fingerprint != new.fingerprint and not lines:
        lines.append("service: compose files or chat template changed")
    return lines or ["nothing: the same overlay"]


class _Project:
    """One composed overlay under Compose: up, logs, the service's container, rm."""

    def __init__(self, client: Any, compose: compose_cli.Compose, target: Composed) -> None:
        self.client, self.target = client, target
        self.stack = ExitStack()
        directory = None if target.override is None else target.files[0].parent
        self.argv = self.stack.enter_context(
            compose.project(target.project, target.files, directory)
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False)

    def container(self) -> Any | None:
        found = self.client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.target.project}",
                    f"com.docker.compose.service={self.target.service}",
                ]
            },
        )
        return found[0] if found else None

    def logs(self) -> str:
        container = self.container()
        if container is None:
            return "(no container)"
        try:
            return str(container.logs(tail=LOG_LINES).decode("utf-8", "replace"))
        except docker.errors.APIError as err:
            return f"(no logs: {err})"

    def up(self) -> None:
        done = self.run("up", "-d", "--no-deps", self.target.service)
        if done.returncode != 0:
            raise ServerError(f"compose up failed: {(done.stdout + done.stderr)[-2000:]}")

    def remove(self) -> None:
        done = self.run("rm", "-s", "-f", self.target.service)
        if done.returncode != 0:
            raise UnreachableError(f"compose rm failed: {(done.stdout + done.stderr)[-1000:]}")


def _health(container: Any) -> str:
    """`healthy`, `unhealthy`, `starting`, `exited` or `running` (no healthcheck)."""
    container.reload()
    state = container.attrs.get("State") or {}
    if state.get("Status") not in ("running", "created", "restarting"):
        return "exited"
    health = (state.get("Health") or {}).get("Status")
    return str(health) if health else "running"


def wait_healthy(project: _Project, deadline_s: float) -> None:
    """Return once Docker reports the service healthy; raise with its logs otherwise."""
    deadline = time.monotonic() + deadline_s
    state = "missing"
    while time.monotonic() < deadline:
        container = project.container()
        state = _health(container) if container is not None else "missing"
        if state in ("healthy", "running"):
            return
        if state in ("unhealthy", "exited"):
            break
        time.sleep(1.0)
    if state in ("starting", "missing"):
        state = f"not healthy after {deadline_s:.0f} s"
    raise ServerError(
        f"service {project.target.service} {state}; its last output:\n{project.logs()}"
    )


def _url(target: Composed, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    port = flag(service_command(target.overlay / BASE_COMPOSE, target.lock.service), "--port")
    if port is None:
        raise ConfigError("cannot tell the service's port: give --url for the smoke checks")
    return f"http://127.0.0.1:{port}"


def smoke(target: Composed, options: UpOptions) -> None:
    if not options.checks:
        return
    results = run_suite(SmokeOptions(_url(target, options.url)), list(options.checks))
    failed = [r for r in results if r.status is Status.FAILED]
    for result in results:
        _say(f"  smoke {result.name}: {result.status.value} {result.reason[:120]}", error=True)
    if failed:
        raise ServerError("smoke failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))


def _image(client: Any, lock: Lock) -> str:
    image = local_image(client, lock)
    if image is None:
        _say(f"pulling {lock.image.pinned}", error=True)
        image = pull_image(client, lock)
    return image


def _refuse_foreign_owner(client: Any, target: Composed) -> None:
    """A container by our service's `container_name` in another project would clash."""
    base = target.files[0]
    spec = ((read_yaml(base) or {}).get("services") or {}).get(target.service) or {}
    name = spec.get("container_name")
    if not name:
        return
    try:
        other = client.containers.get(str(name))
    except docker.errors.NotFound:
        return
    owner = (other.labels or {}).get("com.docker.compose.project")
    if owner != target.project:
        raise ConfigError(
            f"container {name!r} exists outside compose project {target.project!r} "
            f"(project: {owner or 'none'}); stop and remove it, or give --project {owner}"
        )


def _bring_up(
    client: Any, compose: compose_cli.Compose, target: Composed, options: UpOptions
) -> None:
    project = _Project(client, compose, target)
    with project.stack:
        project.up()
        wait_healthy(project, options.deadline_s)
        smoke(target, options)


def run(
    recipe: Path | None,
    image: str | None,
    overlay: Path | None,
    options: UpOptions,
    source: SourceOptions,
) -> int:
    if overlay is None:
        if recipe is None:
            raise ConfigError("give --recipe (sync, then up) or --overlay DIR")
        plan = make_plan(recipe, image, False, source)
        out = overlays_root(plan.recipe, options.out)
        if plan.conflicts:
            print_table(plan.lock, out_console)
            _say("up refused: a patch does not apply; nothing changed", error=True)
            return EXIT_CONFLICT
        overlay, _, _ = write(plan, out)
        service = plan.recipe.service
        if options.user is None and service.compose_file is not None:
            user = UserCompose(plan.recipe.path.parent / service.compose_file, service.name)
            options = replace(options, user=user)
    links = links_of(overlay.resolve())
    previous = linked(links / CURRENT)
    compose = compose_cli.find()
    with tempfile.TemporaryDirectory(prefix="patchkeeper-up-") as scratch:
        target = composed(overlay, options.user, options.project, Path(scratch))
        old = composed(previous, options.user, options.project, Path(scratch)) if previous else None
        _say(
            f"up: {target.lock.recipe}/{target.service} in compose project {target.project} "
            f"({compose.label})"
        )
        for line in changes(old.lock if old else None, target.lock):
            _say(f"  {line}")
        if options.dry_run:
            _say(f"dry run: would recreate {target.service} from {target.overlay}")
            return EXIT_OK
        client = EngineSource().client
        drift.guard(client, _image(client, target.lock), target.lock)
        _refuse_foreign_owner(client, target)
        try:
            _bring_up(client, compose, target, options)
        except ServerError as err:
            _say(f"up failed: {err}", error=True)
            return _roll_back(client, compose, target, old, options)
        if previous != target.overlay:
            if previous:
                point(links / PREVIOUS, previous.name)
            point(links / CURRENT, target.overlay.name)
        record_override(links, target)
        _say(f"up: {target.service} healthy on {target.overlay.name}")
    return EXIT_OK


def _roll_back(
    client: Any,
    compose: compose_cli.Compose,
    failed: Composed,
    old: Composed | None,
    options: UpOptions,
) -> int:
    if old is None or old.overlay == failed.overlay:
        project = _Project(client, compose, failed)
        with project.stack:
            project.remove()
        _say("no previous overlay to return to: the failed service was removed", error=True)
        return EXIT_CONFLICT
    _say(f"rolling back to {old.overlay.name}", error=True)
    try:
        _bring_up(client, compose, old, UpOptions(deadline_s=options.deadline_s, checks=()))
    except ServerError as err:
        _say(f"rollback failed too: {err}", error=True)
        return EXIT_CONFLICT
    _say(f"rolled back: {old.service} healthy on {old.overlay.name} again", error=True)
    return EXIT_CONFLICT


def down(recipe: Path | None, overlay: Path | None, options: UpOptions) -> int:
    """Stop and remove the service `up` brought up (its project's other services stay)."""
    if overlay is None:
        if recipe is None:
            raise ConfigError("give --recipe or --overlay DIR")
        loaded = load_recipe(recipe)
        out = overlays_root(loaded, options.out)
        overlay = linked(out / loaded.name / CURRENT)
        if overlay is None:
            raise ConfigError(f"{out}: `up` has brought nothing up for {recipe}")
    with tempfile.TemporaryDirectory(prefix="patchkeeper-down-") as scratch:
        target = composed(overlay, options.user, options.project, Path(scratch))
        if options.dry_run:
            _say(f"dry run: would remove {target.service} of {target.project}")
            return EXIT_OK
        project = _Project(EngineSource().client, compose_cli.find(), target)
        with project.stack:
            project.remove()
    _say(f"down: removed {target.service} of compose project {target.project}")
    return EXIT_OK


def checks_named(names: Sequence[str], no_smoke: bool) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ConfigError(f"--check {unknown}: unknown; known: {ALL}")
    if no_smoke:
        return ()
    return tuple(names) or tuple(QUICK_CHECKS)
