"""The tiers of `patchkeeper verify` on their runtimes: what is served, where, and checked.

Runtimes: `image` serves from the locked image itself (the adapter in a container of
it; the boot tier as the overlay's compose service); `host` serves from venvs on this
machine (the image's sglang release from PyPI for the adapter; real SGLang on the CPU
with a tiny model for the boot tier), for runners that cannot pull the image. `auto`
takes the image when the local engine has it.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from rich.markup import escape

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.errors import ConfigError, ImageError, ServerError, UnreachableError
from patchkeeper.image.engine import EngineSource, local_image, pull_image
from patchkeeper.overlay.compose import (
    ROOTFS,
    TEMPLATE_FILE,
    VANILLA,
    OverlayMount,
    flag,
    overlay_mounts,
    service_command,
)
from patchkeeper.overlay.lock import Lock
from patchkeeper.overlay.write import BASE_COMPOSE
from patchkeeper.paths import env_dir
from patchkeeper.ui import err_console
from patchkeeper.verify import image_runtime
from patchkeeper.verify.catalog import CHECK_NAMES
from patchkeeper.verify.catalog import Runtime as Runtime  # re-exported for commands
from patchkeeper.verify.cpu.env import SGLANG_VERSION as BOOT_SGLANG
from patchkeeper.verify.cpu.env import boot_model, ensure_boot_env
from patchkeeper.verify.image_runtime import Running, adapter_container, compose_service
from patchkeeper.verify.image_sglang import image_sglang
from patchkeeper.verify.reporting import passed
from patchkeeper.verify.runtime import adapter_endpoint, boot_endpoint
from patchkeeper.verify.sglang_env import (
    HostSglang,
    ensure_release,
    installed_package,
    overlay_package,
)
from patchkeeper.verify.smoke import CheckResult, SmokeOptions, Status, run_suite
from patchkeeper.verify.witness import Verdict, judge

Served = TypeVar("Served")

# prefix_cache and speculative need a real engine: they belong to the boot tier.
ENGINE_CHECKS = ["prefix_cache", "speculative"]
# Run only where a patch names them as its witness: billing_header_prefix fails on every
# SGLang release so far (none keeps the per-turn billing line out of the prompt's head),
# so in the default lists it would fail every verify until a local patch exists.
ON_WITNESS = ["billing_header_prefix"]
ADAPTER_CHECKS = [c for c in CHECK_NAMES if c not in (*ENGINE_CHECKS, *ON_WITNESS)]
BOOT_CHECKS = [*ADAPTER_CHECKS, *ENGINE_CHECKS]
# Not claude_code on the CPU: Claude Code's ~20k-token request overflows the tiny model's
# 4096-token context, and even slimmed (no tools, short system prompt: ~2k tokens, ~18 s)
# a random model never stops before CLAUDE_CODE_MAX_OUTPUT_TOKENS, which the CLI
# reports as an error ("response exceeded the N output token maximum").
CPU_BOOT_CHECKS = [c for c in BOOT_CHECKS if c != "claude_code"]


def with_witnesses(names: list[str], lock: Lock) -> list[str]:
    """`names`, plus the checks outside them that the lock's patches name as witnesses."""
    wanted = {p.witness for p in lock.patches}
    return [*names, *(c for c in ON_WITNESS if c in wanted and c not in names)]


@dataclass(frozen=True)
class Settings:
    """What the command line chose, beyond the overlay, tier and runtime."""

    sglang_version: str | None = None  # host adapter tier: a release instead of the image's
    chat_template: Path | None = None
    claude_cli: str | None = None
    deadline_s: float = 1800.0


@dataclass(frozen=True)
class Outcome:
    """What to report: the overlay's checks, and for the adapter tier the vanilla run."""

    title: str
    runtime: Runtime
    checks: list[CheckResult]
    vanilla: list[CheckResult] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    logs: str = ""  # the server's, when a check failed
    run_id: str | None = None  # the label value of the containers an image run started
    sglang: dict[str, str] = field(default_factory=dict)  # host runs: version, origin


@dataclass(frozen=True)
class _Engine:
    client: Any
    image: str
    run_id: str = field(default_factory=image_runtime.new_run_id)


def verify(
    lock: Lock, overlay: Path, tier: str, runtime: Runtime, settings: Settings, scratch: Path
) -> Outcome:
    if tier not in ("adapter", "boot"):
        raise ConfigError(f"--tier {tier!r}: choose adapter or boot")
    engine = _engine(runtime, lock)
    if tier == "adapter":
        if engine:
            return _adapter_in_image(lock, overlay, settings, scratch, engine)
        return _adapter_on_host(lock, overlay, settings, scratch)
    if engine:
        return _boot_in_image(lock, overlay, settings, scratch, engine)
    return _boot_on_host(lock, overlay, settings, scratch)


def _engine(runtime: Runtime, lock: Lock) -> _Engine | None:
    """The engine and the lock's image in it for the image runtime; None for the host."""
    if runtime is Runtime.HOST:
        return None
    try:
        client = EngineSource().client
    except UnreachableError:
        if runtime is Runtime.AUTO:
            return None
        raise
    image = local_image(client, lock.image)
    if image is None and runtime is Runtime.IMAGE:
        image = pull_image(client, lock.image)
    if image and not image_runtime.runs_python(client, image, lock):
        if runtime is Runtime.IMAGE:
            raise ImageError(f"{lock.image.ref} has no python3 to serve from: use --runtime host")
        err_console.print(
            f"{escape(lock.image.ref)} has no python3 to serve from: verifying on the host",
            soft_wrap=True,
        )
        return None
    return _Engine(client, image) if image else None


def overlay_files(
    mounts: Sequence[OverlayMount], hashes: Callable[[list[str]], Mapping[str, str | None]]
) -> CheckResult:
    """Every overlay file the server loads must be byte for byte what the lock says.

    `hashes` gives the sha256 of each target path as the server sees it.
    """
    started = time.monotonic()
    try:
        seen = hashes([m.target for m in mounts])
    except ServerError as err:
        return CheckResult("overlay_files", Status.FAILED, str(err), time.monotonic() - started)
    wrong = [
        f"{m.target}: {seen.get(m.target)} != lock {m.sha256}"
        for m in mounts
        if seen.get(m.target) != m.sha256
    ]
    seconds = time.monotonic() - started
    if wrong:
        return CheckResult("overlay_files", Status.FAILED, "; ".join(wrong[:3]), seconds)
    return CheckResult(
        "overlay_files", Status.PASSED, f"{len(mounts)} file(s) match the lock", seconds
    )


def _package_files(lock: Lock, overlay: Path, package: Path) -> CheckResult:
    """The host runtimes load only the package: its files under `<source_root>/python`."""
    root = PurePosixPath(lock.patchsets[0].source_root) / "python"

    def hashes(targets: list[str]) -> dict[str, str | None]:
        served = [package.joinpath(*PurePosixPath(t).relative_to(root).parts) for t in targets]
        return {
            t: hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None
            for t, f in zip(targets, served, strict=True)
        }

    mounts = overlay_mounts(lock, overlay)
    return overlay_files(
        [m for m in mounts if PurePosixPath(m.target).is_relative_to(root)], hashes
    )


def _on(
    endpoint: AbstractContextManager[Served], checks: Callable[[Served], list[CheckResult]]
) -> list[CheckResult]:
    """Run `checks` against a served endpoint; a server that never came up is one failure."""
    started = time.monotonic()
    try:
        with endpoint as served:
            return checks(served)
    except ServerError as err:
        reason = "\n".join([str(err), *getattr(err, "__notes__", [])])
        return [CheckResult("server", Status.FAILED, reason, time.monotonic() - started)]


def _template(overlay: Path, given: Path | None, scratch: Path) -> Path:
    if given is not None:
        return given
    if (overlay / TEMPLATE_FILE).is_file():
        return overlay / TEMPLATE_FILE
    fallback = scratch / "qwen-like.jinja"
    fallback.write_text(QWEN_LIKE_TEMPLATE, encoding="utf-8")
    return fallback


def _adapter_suite(url: str, settings: Settings, lock: Lock) -> list[CheckResult]:
    names = with_witnesses(ADAPTER_CHECKS, lock)
    return run_suite(SmokeOptions(url, claude_cli=settings.claude_cli), names)


def host_sglang(lock: Lock, settings: Settings) -> HostSglang:
    """The image's own sglang, or the release `--sglang-version` names instead."""
    if settings.sglang_version:
        return ensure_release(settings.sglang_version, env_dir())
    with err_console.status(f"reading sglang's python/ tree from {lock.image.ref}"):
        return image_sglang(lock, env_dir())


def _adapter_on_host(lock: Lock, overlay: Path, settings: Settings, scratch: Path) -> Outcome:
    host = host_sglang(lock, settings)
    template = _template(overlay, settings.chat_template, scratch)
    root = lock.patchsets[0].source_root
    package = overlay_package(host.package, overlay / ROOTFS, root, scratch)
    # Vanilla is this image's own bytes of the overlaid files (kept by sync) over the
    # package: the same bytes when the package is the image's tree; over a release, a
    # fix the image already has is still judged as present.
    vanilla = host.package
    if (overlay / VANILLA).is_dir():
        vanilla = overlay_package(host.package, overlay / VANILLA, root, scratch / VANILLA)
    results = {}
    for name, path in (("vanilla", vanilla), ("overlay", package)):
        with err_console.status(f"adapter tier, {name}: sglang {host.version}"):
            results[name] = _on(
                adapter_endpoint(host.python, template, path),
                functools.partial(_adapter_suite, settings=settings, lock=lock),
            )
    return Outcome(
        f"verify adapter tier: {lock.image.ref} + overlay (sglang {host.version})",
        Runtime.HOST,
        [_package_files(lock, overlay, package), *results["overlay"]],
        results["vanilla"],
        judge(lock.patches, results["vanilla"], results["overlay"]),
        sglang={"version": host.version, "origin": host.origin},
    )


def _adapter_in_image(
    lock: Lock, overlay: Path, settings: Settings, scratch: Path, engine: _Engine
) -> Outcome:
    template = _template(overlay, settings.chat_template, scratch)
    mounts = overlay_mounts(lock, overlay)

    def checks(running: Running, mounted: Sequence[OverlayMount]) -> list[CheckResult]:
        files = [overlay_files(mounted, running.digests)] if mounted else []
        return files + _adapter_suite(running.url, settings, lock)

    results = {}
    for name, mounted in (("vanilla", []), ("overlay", mounts)):
        with err_console.status(f"adapter tier, {name}: in {lock.image.ref}"):
            results[name] = _on(
                adapter_container(engine.client, engine.image, template, mounted, engine.run_id),
                functools.partial(checks, mounted=mounted),
            )
    return Outcome(
        f"verify adapter tier in the image: {lock.image.ref} + overlay",
        Runtime.IMAGE,
        results["overlay"],
        results["vanilla"],
        judge(lock.patches, results["vanilla"], results["overlay"]),
        run_id=engine.run_id,
    )


def _boot_on_host(lock: Lock, overlay: Path, settings: Settings, scratch: Path) -> Outcome:
    """Real SGLang on CPU (tiny local model, NEXTN MTP), the overlay first on its path."""
    python = ensure_boot_env(env_dir())
    model = boot_model(python, env_dir())
    package = overlay_package(
        installed_package(python), overlay / ROOTFS, lock.patchsets[0].source_root, scratch
    )
    options_for = functools.partial(
        SmokeOptions, speculative_algorithm="NEXTN", max_tokens=16, prefix_rules=40
    )
    with err_console.status(f"boot tier: sglang {BOOT_SGLANG} on CPU with NEXTN"):
        results = _on(
            boot_endpoint(python, model, package, settings.deadline_s),
            lambda url: run_suite(options_for(url), with_witnesses(CPU_BOOT_CHECKS, lock)),
        )
    return Outcome(
        f"verify boot tier: sglang {BOOT_SGLANG} on CPU + overlay of {lock.image.ref}",
        Runtime.HOST,
        [_package_files(lock, overlay, package), *results],
    )


def _boot_in_image(
    lock: Lock, overlay: Path, settings: Settings, scratch: Path, engine: _Engine
) -> Outcome:
    """The overlay's compose service as it will run, the suite against its port."""
    command = service_command(overlay / BASE_COMPOSE, lock.service)
    port = flag(command, "--port")
    if port is None or not port.isdigit():
        raise ConfigError(f"{overlay / BASE_COMPOSE}: service {lock.service!r} has no --port")
    speculative = flag(command, "--speculative-algorithm")
    names = with_witnesses([c for c in BOOT_CHECKS if speculative or c != "speculative"], lock)
    mounts = overlay_mounts(lock, overlay)
    logs = []

    def checks(running: Running) -> list[CheckResult]:
        options = SmokeOptions(
            running.url, speculative_algorithm=speculative, claude_cli=settings.claude_cli
        )
        results = [overlay_files(mounts, running.digests), *run_suite(options, names)]
        if not passed(results):
            logs.append(running.logs())
        return results

    with err_console.status(f"boot tier: compose up {lock.service} from {lock.image.ref}"):
        results = _on(
            compose_service(
                engine.client,
                overlay,
                lock.service,
                int(port),
                engine.run_id,
                scratch,
                settings.deadline_s,
            ),
            checks,
        )
    return Outcome(
        f"verify boot tier: {lock.image.ref} + overlay, as composed",
        Runtime.IMAGE,
        results,
        logs="".join(logs),
        run_id=engine.run_id,
    )
