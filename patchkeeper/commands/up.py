"""`patchkeeper up` / `down`: move the running server to an overlay, as one transaction.

up: sync (or take `--overlay`), then the pre-flight checks a dry run runs too: the
recipe's links are links, the running container is read from the engine (what it
mounts, which image, which project owns it; a container of unknown origin is refused,
never replaced), the smoke URL is the published port Compose resolves, the image is
local (pulled by digest) and holds the lock's vanilla files (the drift guard). Then,
holding the compose project's lock, the service is recreated, waited healthy within
the deadline and smoke-tested. After the recreate *any* failure (unhealthy, smoke
failed, unreachable, deadline, Ctrl-C, SIGTERM, a bug) returns to what ran before,
checked healthy, and exits 1: the previous overlay, or the user's own service from
their compose file alone, or (when nothing ran) no service. `<out>/<recipe>/current`
names what `up` last proved, `previous` the one before.

down: remove the container `up` brought up (the user's project and service when the
recipe adopted their compose file), found from the engine, from any directory.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors
from filelock import FileLock, Timeout

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.commands.sync import write
from patchkeeper.config.load import load_recipe, read_yaml
from patchkeeper.config.models import Recipe
from patchkeeper.errors import (
    EXIT_CONFLICT,
    EXIT_OK,
    ConfigError,
    PatchkeeperError,
    ServerError,
    UnreachableError,
)
from patchkeeper.image.engine import EngineSource
from patchkeeper.overlay import compose_cli, drift, running
from patchkeeper.overlay.compose import flag, project_name
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.root import overlays_root
from patchkeeper.overlay.service import (
    Composed,
    UserCompose,
    composed,
    links_of,
    project_of_file,
    record_override,
)
from patchkeeper.overlay.write import CURRENT, LINKS, PREVIOUS, STORE, linked, point
from patchkeeper.paths import cache_dir
from patchkeeper.report import print_table
from patchkeeper.ui import err_console, out_console, print_document
from patchkeeper.verify.image_runtime import local_image, pull_image
from patchkeeper.verify.smoke import ALL, SmokeOptions, Status, run_suite

QUICK_CHECKS = ["models_list", "messages_basic"]
LOG_LINES = 60


def _say(line: str, error: bool = False) -> None:
    """One unwrapped line (paths and image names stay greppable in logs)."""
    (err_console if error else out_console).print(
        line, soft_wrap=True, markup=False, highlight=False
    )


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
    as_json: bool = False

    def with_run(self, deadline_s: float, checks: tuple[str, ...], url: str | None) -> UpOptions:
        if not math.isfinite(deadline_s) or deadline_s <= 0:
            raise ConfigError(f"--deadline {deadline_s}: must be a positive number of seconds")
        return replace(self, deadline_s=deadline_s, checks=checks, url=url)


def options(
    out: Path | None,
    compose: Path | None,
    service: str | None,
    project: str | None,
    dry_run: bool,
    as_json: bool = False,
) -> UpOptions:
    if (compose is None) != (service is None):
        raise ConfigError("give --compose FILE and --service NAME together")
    user = UserCompose(compose.absolute(), service) if compose and service else None
    return UpOptions(out=out, user=user, project=project, dry_run=dry_run, as_json=as_json)


def changes(old: Lock | None, new: Lock, before: str = "nothing was running") -> list[str]:
    """What moving from `old` to `new` changes, one line each (image, patches, files)."""
    if old is None:
        return [f"image:   {new.image.ref} ({new.image.pinned})  ({before})"]
    lines = []
    if (old.image.ref, old.image.pinned) != (new.image.ref, new.image.pinned):
        lines.append(f"image:   {old.image.ref} -> {new.image.ref} ({new.image.pinned})")
    was_on = {p.id: p.state for p in old.patches}
    now_on = {p.id: p.state for p in new.patches}
    for key in sorted(was_on.keys() | now_on.keys()):
        if was_on.get(key) != now_on.get(key):
            lines.append(f"patch:   {key}: {was_on.get(key, '-')} -> {now_on.get(key, '-')}")
    was = {f.path: f.patched_sha256 for f in old.files}
    now = {f.path: f.patched_sha256 for f in new.files}
    for path in sorted(was.keys() | now.keys()):
        if was.get(path) != now.get(path):
            short = [s[:12] if s else "-" for s in (was.get(path), now.get(path))]
            lines.append(f"file:    {path}: {short[0]} -> {short[1]}")
    if old.fingerprint != new.fingerprint and not lines:
        lines.append("service: compose files or chat template changed")
    return lines or ["nothing: the same overlay"]


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a cron's timeout) while `up` runs: unwinds like Ctrl-C (exit 130 before
    the recreate; rolled back, exit 1, after it), so every `finally` runs."""


@contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM raises `Interrupted`, so `finally` blocks and the rollback run."""

    def stop(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def _shielded() -> Iterator[None]:
    """The rollback runs to its end: Ctrl-C and SIGTERM wait until it is done."""
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@contextmanager
def _serialised(project: str) -> Iterator[None]:
    """One `up` or `down` at a time per compose project (on this machine)."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"compose-project-{project}.lock"
    try:
        with FileLock(str(path), timeout=0):
            yield
    except Timeout:
        raise ConfigError(
            f"another patchkeeper up or down is working on compose project {project!r} "
            f"(lock {path}); nothing changed: try again when it has finished"
        ) from None


class _Project:
    """One composed service under Compose: up, the service's container, its diagnosis."""

    def __init__(self, client: Any, compose: compose_cli.Compose, target: Composed) -> None:
        self.client, self.target = client, target
        self.stack = ExitStack()
        directory = None if target.override is None else target.files[0].parent
        self.argv = self.stack.enter_context(
            compose.project(target.project, target.files, directory)
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return compose_cli.run([*self.argv, *args])

    def container(self) -> Any | None:
        found = running.find(self.client, self.target.project, self.target.service, None)
        return found.container if found else None

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


def diagnosis(container: Any | None, lines: int = LOG_LINES) -> str:
    """Its last output, the health probe's last output and the exit code, as Docker has them."""
    if container is None:
        return "(no container)"
    try:
        container.reload()
        logs = container.logs(tail=lines).decode("utf-8", "replace").rstrip()
    except docker.errors.APIError as err:
        return f"(no logs: {err})"
    state = container.attrs.get("State") or {}
    parts = [logs or "(the container printed nothing)"]
    probes = (state.get("Health") or {}).get("Log") or []
    if probes:
        last = probes[-1]
        output = str(last.get("Output") or "").strip() or "(nothing)"
        parts.append(f"health probe's last output (exit {last.get('ExitCode')}): {output}")
    if state.get("Status") not in ("running", "created", "restarting"):
        parts.append(f"container exit code: {state.get('ExitCode')}")
    return "\n".join(parts)


def wait_healthy(project: _Project, deadline_s: float) -> None:
    """Return once Docker reports the service healthy; raise with its diagnosis otherwise."""
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
        state = f"not healthy after {deadline_s:g} s"
    raise ServerError(
        f"service {project.target.service} {state}; its last output:\n"
        f"{diagnosis(project.container())}"
    )


def _ports(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, published, target) of each published port of a Compose service model."""
    found = []
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            host, published, target = port.get("host_ip", ""), port.get("published"), port["target"]
        else:  # v1 may print the short syntax: [ip:]published:target[/proto]
            parts = str(port).split("/")[0].rsplit(":", 2)
            if len(parts) < 2:
                continue
            host, published, target = parts if len(parts) == 3 else ("", *parts)
        if published not in (None, ""):
            found.append((str(host or ""), int(str(published).split("-")[0]), int(target)))
    return found


def smoke_url(target: Composed, spec: dict[str, Any], given: str | None) -> str:
    """Where a client on this host reaches the service: `--url`, else the published port
    of its `--port` (or its first published port), else `--port` itself."""
    if given:
        return given.rstrip("/")
    command = spec.get("command") or []
    port = flag([str(a) for a in command], "--port") if isinstance(command, list) else None
    published = _ports(spec)
    chosen = [p for p in published if port is not None and p[2] == int(port)] or published
    if chosen:
        host, number, _ = chosen[0]
        host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{number}"
    if port is None:
        raise ConfigError(
            f"cannot tell service {target.service}'s port (no published port, no --port in its "
            "command): give --url for the smoke checks"
        )
    return f"http://127.0.0.1:{port}"


def smoke(url: str, checks: Sequence[str]) -> None:
    if not checks:
        return
    results = run_suite(SmokeOptions(url), list(checks))
    failed = [r for r in results if r.status is Status.FAILED]
    for result in results:
        _say(f"  smoke {result.name}: {result.status.value} {result.reason[:120]}", error=True)
    if failed:
        raise ServerError("smoke failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))


def _model(compose: compose_cli.Compose, target: Composed) -> dict[str, Any]:
    """The service as Compose resolves the files `up` runs (v1 without `name:`: as written)."""
    directory = None if target.override is None else target.files[0].parent
    try:
        model = compose.config(target.files, directory)
    except ConfigError:
        if compose.major >= 2:
            raise
        model = {"services": {}}
        for file in target.files:
            spec = ((read_yaml(file) or {}).get("services") or {}).get(target.service) or {}
            model["services"].setdefault(target.service, {}).update(spec)
    spec = (model.get("services") or {}).get(target.service)
    if not isinstance(spec, dict):
        raise ConfigError(f"{target.files[0]}: no service {target.service!r}")
    return spec


@dataclass(frozen=True)
class Before:
    """What ran before `up`, read from the engine, and what a failure returns to."""

    back: Composed | None  # None: nothing ran, a failure removes what `up` started
    mismatches: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        if self.back is not None and self.back.bare:
            return "your own compose service was running, without an overlay"
        return "nothing was running"


def _store_of(source: str, recipe: str) -> Path | None:
    """The store directory of this recipe a bind source lies in, if it does."""
    path = Path(source)
    for directory in (path, *path.parents):
        if directory.parent.name == STORE:
            lock = running.overlay_lock(directory)
            return directory.resolve() if lock is not None and lock.recipe == recipe else None
    return None


def _origin(found: running.Running, target: Composed, user: UserCompose | None) -> None:
    """Refuse a container neither this recipe's `up` nor the user's compose file made."""
    if found.project != target.project:
        raise ConfigError(
            f"container {found.name} exists outside compose project {target.project!r} "
            f"(its project: {found.project or 'none, not made by compose'}); nothing changed: "
            "stop and remove it" + (f", or give --project {found.project}" if found.project else "")
        )
    if user is not None and found.made_from(user.file):
        return
    store = found.store_overlay()
    lock = running.overlay_lock(store) if store is not None else None
    if lock is not None and lock.recipe == target.lock.recipe:
        return
    made = ", ".join(map(str, found.files)) or "no compose file"
    whose = f" (recipe {lock.recipe!r})" if lock is not None else ""
    raise ConfigError(
        f"container {found.name} of compose project {target.project!r} was made from "
        f"{made}{whose}, not by this recipe nor its compose file; refusing to replace it: "
        "give this recipe another project (service.project or --project), or remove it"
    )


def _before(
    client: Any,
    target: Composed,
    spec: dict[str, Any],
    links: Path,
    user: UserCompose | None,
    scratch: Path,
) -> Before:
    current = linked(links / CURRENT)
    old = composed(current, user, target.project, scratch) if current else None
    name = spec.get("container_name")
    found = running.find(client, target.project, target.service, str(name) if name else None)
    if found is None:
        return Before(old)
    _origin(found, target, user)
    wrong: list[str] = []
    if old is not None:
        wrong = running.mismatches(found, old.overlay, old.lock, local_image(client, old.lock))
        if not wrong:
            return Before(old)
    stores = {_store_of(source, target.lock.recipe) for source in found.mounts.values()}
    mounted = [store for store in stores if store is not None]
    if len(mounted) == 1:
        back: Composed | None = composed(mounted[0], user, target.project, scratch)
    elif user is not None and found.made_from(user.file):
        back = target.without_overlay()
        wrong = wrong or [f"{found.name} runs your compose file without an overlay"]
    else:
        back = old
    return Before(back, tuple(wrong))


def _keep_line(target: Composed, links: Path) -> str:
    """The environment that makes a hand-run `docker compose up -d` keep the overlay."""
    if target.override is not None:
        files = f"{target.files[0]}:{links / f'{target.service}.override.yaml'}"
        where = f"in {target.files[0].parent}/.env"
    else:
        files = ":".join(str(links / CURRENT / f.name) for f in target.files)
        where = "for a hand-run compose"
    return f"COMPOSE_PROJECT_NAME={target.project} COMPOSE_FILE={files}  ({where})"


def _image(client: Any, lock: Lock, dry_run: bool) -> str | None:
    image = local_image(client, lock)
    if image is None and dry_run:
        _tell(f"dry run: would pull {lock.image.pinned}", error=True)
        return None
    if image is None:
        _tell(f"pulling {lock.image.pinned}", error=True)
        image = pull_image(client, lock)
    return image


def _links_are_links(links: Path) -> None:
    for name in LINKS:
        link = links / name
        if link.exists() and not link.is_symlink():
            raise ConfigError(f"{link}: exists and is not a patchkeeper link; move it away")


def _user_of(recipe: Recipe, given: UserCompose | None) -> UserCompose | None:
    service = recipe.service
    if given is None and service.compose_file is not None:
        return UserCompose((recipe.path.parent / service.compose_file).resolve(), service.name)
    return given


def _project(
    compose: compose_cli.Compose, user: UserCompose | None, given: str | None
) -> str | None:
    """`--project`, else (their file, Compose v2) the project Compose itself derives."""
    if given or user is None or compose.major < 2:
        return given
    return str(compose.config([user.file]).get("name") or "") or None


@dataclass
class Outcome:
    """What `up` did, for the closing line and `--json`."""

    target: Composed
    result: str
    changes: list[str]
    mismatches: tuple[str, ...]
    keep: str
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "recipe": self.target.lock.recipe,
            "service": self.target.service,
            "project": self.target.project,
            "overlay": str(self.target.overlay),
            "image": self.target.lock.image.pinned,
            "result": self.result,
            "changes": self.changes,
            "mismatches": list(self.mismatches),
            "compose_env": self.keep,
            "error": self.error,
        }


def run(
    recipe: Path | None,
    image: str | None,
    overlay: Path | None,
    options: UpOptions,
    source: SourceOptions,
) -> int:
    global _json_mode
    _json_mode = options.as_json
    with _terminable(), tempfile.TemporaryDirectory(prefix="patchkeeper-up-") as scratch:
        outcome = _up(recipe, image, overlay, options, source, Path(scratch))
    if options.as_json and isinstance(outcome, Outcome):
        print_document("up", outcome.document())
    if isinstance(outcome, int):
        return outcome
    return EXIT_OK if outcome.result in ("up", "dry-run") else EXIT_CONFLICT


_json_mode = False  # with --json, stdout holds the one document: every line goes to stderr


def _tell(line: str, error: bool = False) -> None:
    _say(line, error=error or _json_mode)


def _up(
    recipe: Path | None,
    image: str | None,
    overlay: Path | None,
    options: UpOptions,
    source: SourceOptions,
    scratch: Path,
) -> Outcome | int:
    user = options.user
    if overlay is None:
        if recipe is None:
            raise ConfigError("give --recipe (sync, then up) or --overlay DIR")
        loaded = load_recipe(recipe)
        links = overlays_root(loaded, options.out) / loaded.name
        _links_are_links(links)
        plan = make_plan(recipe, image, False, source)
        if plan.conflicts:
            print_table(plan.lock, err_console if options.as_json else out_console)
            _tell("up refused: a patch does not apply; nothing changed", error=True)
            return EXIT_CONFLICT
        # A dry run writes its overlay into the scratch directory: nothing the user sees.
        overlay, _, _ = write(plan, scratch / "out" if options.dry_run else links.parent)
        user = _user_of(plan.recipe, user)
    else:
        links = links_of(overlay.resolve())
        _links_are_links(links)
    compose = compose_cli.find()
    target = composed(overlay, user, _project(compose, user, options.project), scratch)
    spec = _model(compose, target)
    url = smoke_url(target, spec, options.url) if options.checks else ""
    client = EngineSource().client
    before = _before(client, target, spec, links, user, scratch)
    old = before.back if before.back is not None and not before.back.bare else None
    lines = changes(old.lock if old else None, target.lock, before.note)
    outcome = Outcome(target, "dry-run", lines, before.mismatches, _keep_line(target, links))
    _tell(
        f"up: {target.lock.recipe}/{target.service} in compose project {target.project} "
        f"({compose.label})"
    )
    for line in lines:
        _tell(f"  {line}")
    for line in before.mismatches:
        _tell(f"  engine: {line}", error=True)
    if before.mismatches:
        _tell(f"  to keep the overlay on a hand-run compose, set {outcome.keep}", error=True)
    image_id = _image(client, target.lock, options.dry_run)
    if image_id is not None:
        drift.guard(client, image_id, target.lock)
    if options.dry_run:
        _tell(f"dry run: would recreate {target.service} from {target.overlay.name}")
        return outcome
    with _serialised(target.project):
        try:
            _bring_up(client, compose, target, options.deadline_s)
            smoke(url, options.checks)
        except (Exception, KeyboardInterrupt) as err:
            why = str(err) if isinstance(err, PatchkeeperError) else f"{type(err).__name__} {err}"
            _tell(f"up failed: {why}", error=True)
            _keep_logs(client, target)
            with _shielded():
                outcome.result = _roll_back(client, compose, target, before, options.deadline_s)
            outcome.error = why
            return outcome
        _settle(links, target, before.back)
    _tell(f"up: {target.service} healthy on {target.overlay.name}")
    _tell(f"  a hand-run compose keeps it with {outcome.keep}")
    outcome.result = "up"
    return outcome


def _bring_up(
    client: Any, compose: compose_cli.Compose, target: Composed, deadline_s: float
) -> None:
    project = _Project(client, compose, target)
    with project.stack:
        project.up()
        wait_healthy(project, deadline_s)


def _settle(links: Path, target: Composed, back: Composed | None) -> None:
    """`current` names the overlay now proved, `previous` what ran before it."""
    links.mkdir(parents=True, exist_ok=True)
    if back is not None and not back.bare and back.overlay != target.overlay:
        point(links / PREVIOUS, back.overlay.name)
    point(links / CURRENT, target.overlay.name)
    record_override(links, target)


def _keep_logs(client: Any, target: Composed) -> None:
    """The failed container's full diagnosis, kept beside its overlay for later reading."""
    found = running.find(client, target.project, target.service, None)
    if found is None:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = target.overlay / f"up-failed-{stamp}.log"
    try:
        path.write_text(diagnosis(found.container, lines=2000) + "\n", encoding="utf-8")
    except OSError as err:
        _tell(f"  (its logs could not be kept in {path}: {err.strerror})", error=True)
        return
    _tell(f"  its logs are kept in {path}", error=True)


def _roll_back(
    client: Any, compose: compose_cli.Compose, failed: Composed, before: Before, deadline_s: float
) -> str:
    """Return to what ran before, checked healthy; remove the failed service only when
    nothing ran before it (it is then ours)."""
    back = before.back
    if back is None:
        project = _Project(client, compose, failed)
        with project.stack:
            project.remove()
        _tell("nothing ran before: the failed service was removed", error=True)
        return "removed"
    what = "your own compose file (no overlay)" if back.bare else back.overlay.name
    _tell(f"rolling back to {what}", error=True)
    try:
        _bring_up(client, compose, back, deadline_s)
    except (PatchkeeperError, OSError) as err:
        _tell(f"rollback failed too: {err}", error=True)
        return "rollback-failed"
    _tell(f"rolled back: {back.service} healthy on {what} again", error=True)
    return "rolled-back"


@dataclass(frozen=True)
class _Service:
    """The service `down` removes, and the recipe whose container it may be."""

    project: str
    service: str
    container_name: str | None
    recipe: str


def down(recipe: Path | None, overlay: Path | None, options: UpOptions) -> int:
    """Remove the container `up` brought up (its project's other services stay)."""
    global _json_mode
    _json_mode = options.as_json
    user, loaded, gone = options.user, None, None
    if overlay is None:
        if recipe is None:
            raise ConfigError("give --recipe or --overlay DIR")
        loaded = load_recipe(recipe)
        links = overlays_root(loaded, options.out) / loaded.name
        user = _user_of(loaded, user)
        overlay = linked(links / CURRENT)  # None when missing or dangling: ask the engine
        if overlay is None and (links / CURRENT).is_symlink():  # its store directory removed
            gone = links.parent / STORE / Path(os.readlink(links / CURRENT)).name
    compose = compose_cli.find()
    project = _project(compose, user, options.project)
    with tempfile.TemporaryDirectory(prefix="patchkeeper-down-") as scratch:
        if overlay is not None:
            target = composed(overlay, user, project, Path(scratch))
            spec = _model(compose, target)
            name = spec.get("container_name")
            named = _Service(
                target.project, target.service, str(name) if name else None, target.lock.recipe
            )
        else:
            assert loaded is not None
            named = _unproven(loaded, user, project)
    found = running.find(EngineSource().client, named.project, named.service, named.container_name)
    if found is None:
        _tell(f"down: no container of service {named.service} in project {named.project} exists")
        return _down_document(options, named, None, "nothing")
    _down_origin(found, named, user, gone)
    if options.dry_run:
        _tell(f"dry run: would remove {found.name} (service {named.service} of {named.project})")
        return _down_document(options, named, found.name, "dry-run")
    with _serialised(named.project):
        try:
            found.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            raise UnreachableError(f"removing container {found.name}: {err}") from None
    _tell(
        f"down: removed {found.name} (service {named.service} of compose project {named.project})"
    )
    return _down_document(options, named, found.name, "removed")


def _unproven(recipe: Recipe, user: UserCompose | None, project: str | None) -> _Service:
    """The service of a recipe without a `current` link, from its compose file or itself."""
    if user is not None:
        document = read_yaml(user.file) or {}
        spec = (document.get("services") or {}).get(user.service) or {}
        name = spec.get("container_name")
        return _Service(
            project or project_of_file(user.file, document),
            user.service,
            str(name) if name else None,
            recipe.name,
        )
    service = recipe.service
    return _Service(
        project or project_name(recipe.name, service),
        service.name,
        service.container_name,
        recipe.name,
    )


def _down_origin(
    found: running.Running, named: _Service, user: UserCompose | None, gone: Path | None
) -> None:
    """Refuse a container neither this recipe's `up` nor its compose file made (`gone`:
    the removed store directory a dangling `current` names, which made it too)."""
    if found.project != named.project:
        raise ConfigError(
            f"container {found.name} is not in compose project {named.project!r} "
            f"(its project: {found.project or 'none'}); refusing to remove it"
        )
    if user is not None and found.made_from(user.file):
        return
    if gone is not None and any(f.parent.resolve() == gone.resolve() for f in found.files):
        return
    store = found.store_overlay()
    lock = running.overlay_lock(store) if store is not None else None
    if lock is None or lock.recipe != named.recipe:
        made = ", ".join(map(str, found.files)) or "no compose file"
        raise ConfigError(
            f"container {found.name} of compose project {named.project!r} was made from {made}, "
            f"not by recipe {named.recipe!r} nor its compose file; refusing to remove it"
        )


def _down_document(options: UpOptions, named: _Service, container: str | None, result: str) -> int:
    if options.as_json:
        body = {
            "recipe": named.recipe,
            "project": named.project,
            "service": named.service,
            "container": container,
            "result": result,
        }
        print_document("down", body)
    return EXIT_OK


def checks_named(names: Sequence[str], no_smoke: bool) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ConfigError(f"--check {unknown}: unknown; known: {ALL}")
    if no_smoke:
        return ()
    return tuple(names) or tuple(QUICK_CHECKS)
