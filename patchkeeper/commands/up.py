"""`patchkeeper up`: move the running server to an overlay, as one transaction.

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

`down` (commands/down.py) removes what `up` brought up; both drive Compose through
overlay/driver.py.
"""

from __future__ import annotations

import math
import signal
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchkeeper.commands._common import SourceOptions, make_plan
from patchkeeper.commands.sync import write
from patchkeeper.config.load import load_recipe
from patchkeeper.errors import (
    EXIT_CONFLICT,
    EXIT_OK,
    ConfigError,
    PatchkeeperError,
    ServerError,
)
from patchkeeper.image.engine import EngineSource, local_image, pull_image
from patchkeeper.overlay import compose_cli, drift, driver, running
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.root import overlays_root
from patchkeeper.overlay.service import (
    Composed,
    UserCompose,
    composed,
    links_of,
    record_override,
)
from patchkeeper.overlay.write import (
    CURRENT,
    FAILED_LOG_GLOB,
    LINKS,
    PREVIOUS,
    STORE,
    linked,
    point,
)
from patchkeeper.report import print_table
from patchkeeper.ui import err_console, out_console, plain, print_document
from patchkeeper.verify.smoke import ALL, SmokeOptions, Status, run_suite

QUICK_CHECKS = ["models_list", "messages_basic"]


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


def smoke(url: str, checks: Sequence[str]) -> None:
    if not checks:
        return
    results = run_suite(SmokeOptions(url), list(checks))
    failed = [r for r in results if r.status is Status.FAILED]
    for result in results:
        _say(
            f"  smoke {result.name}: {result.status.value} {plain(result.reason[:120])}", error=True
        )
    if failed:
        raise ServerError("smoke failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))


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
        wrong = running.mismatches(
            found, old.overlay, old.lock, local_image(client, old.lock.image)
        )
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
    image = local_image(client, lock.image)
    if image is None and dry_run:
        _tell(f"dry run: would pull {lock.image.pinned}", error=True)
        return None
    if image is None:
        _tell(f"pulling {lock.image.pinned}", error=True)
        image = pull_image(client, lock.image)
    return image


def _links_are_links(links: Path) -> None:
    for name in LINKS:
        link = links / name
        if link.exists() and not link.is_symlink():
            raise ConfigError(f"{link}: exists and is not a patchkeeper link; move it away")


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
        user = driver.user_of(plan.recipe, user)
    else:
        links = links_of(overlay.resolve())
        _links_are_links(links)
    compose = compose_cli.find()
    target = composed(overlay, user, driver.project_for(compose, user, options.project), scratch)
    model = compose.config(target.files)  # asked once: the smoke URL, origin and drift guard
    spec = driver.service_of(model, target)
    url = driver.smoke_url(target.service, spec, options.url) if options.checks else ""
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
    drift.guard_service(target, model)  # the store as sync wrote it, run as the lock says
    image_id = _image(client, target.lock, options.dry_run)
    if image_id is not None:
        drift.guard(client, image_id, target.lock)
    if options.dry_run:
        _tell(f"dry run: would recreate {target.service} from {target.overlay.name}")
        return outcome
    with driver.serialised(target.project):
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
    project = driver.ComposeService(client, compose, target)
    with project.stack:
        project.up()
        driver.wait_healthy(project, deadline_s)


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
    path = target.overlay / FAILED_LOG_GLOB.replace("*", stamp)
    try:
        path.write_text(driver.diagnosis(found.container, lines=2000) + "\n", encoding="utf-8")
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
        project = driver.ComposeService(client, compose, failed)
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


def checks_named(names: Sequence[str], no_smoke: bool) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ConfigError(f"--check {unknown}: unknown; known: {ALL}")
    if no_smoke:
        return ()
    return tuple(names) or tuple(QUICK_CHECKS)
