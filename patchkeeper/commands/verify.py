"""`patchkeeper verify`: prove an overlay, and each patch's witness, against the protocol."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path, PurePosixPath

from rich.table import Table

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError
from patchkeeper.overlay.compose import ROOTFS, TEMPLATE_FILE
from patchkeeper.overlay.lock import Lock, read_lock
from patchkeeper.paths import env_dir
from patchkeeper.ui import err_console, out_console
from patchkeeper.verify import reporting
from patchkeeper.verify.cpu.env import SGLANG_VERSION as BOOT_SGLANG
from patchkeeper.verify.cpu.env import build_tiny_model, ensure_boot_env
from patchkeeper.verify.runtime import adapter_endpoint, boot_endpoint
from patchkeeper.verify.sglang_env import ensure_env, overlay_package
from patchkeeper.verify.smoke import CheckResult, SmokeOptions, Status, run_suite
from patchkeeper.verify.witness import Verdict, judge

# prefix_cache and speculative need a real engine: they belong to the boot tier.
ADAPTER_CHECKS = [
    "messages_basic",
    "models_list",
    "count_tokens",
    "mid_conversation_system",
    "tool_stream_blocks",
    "thinking_disabled",
    "concurrency",
    "claude_code",
    "sse_grammar",
]


BOOT_CHECKS = [c for c in ADAPTER_CHECKS if c != "claude_code"] + ["prefix_cache", "speculative"]


def overlay_files(lock: Lock, package: Path) -> CheckResult:
    """Every overlay file the runtime loads must be byte for byte what the lock says."""
    root = PurePosixPath(lock.patchsets[0].source_root) / "python"
    started, wrong, checked = time.monotonic(), [], 0
    for file in lock.files:
        path = PurePosixPath(file.path)
        if not path.is_relative_to(root):
            continue
        checked += 1
        served = package.joinpath(*path.relative_to(root).parts)
        digest = hashlib.sha256(served.read_bytes()).hexdigest() if served.is_file() else None
        if digest != file.patched_sha256:
            wrong.append(f"{file.path}: {digest} != lock {file.patched_sha256}")
    seconds = time.monotonic() - started
    if wrong:
        return CheckResult("overlay_files", Status.FAILED, "; ".join(wrong[:3]), seconds)
    return CheckResult("overlay_files", Status.PASSED, f"{checked} file(s) match the lock", seconds)


def _template(overlay: Path, given: Path | None, scratch: Path) -> Path:
    if given is not None:
        return given
    if (overlay / TEMPLATE_FILE).is_file():
        return overlay / TEMPLATE_FILE
    fallback = scratch / "qwen-like.jinja"
    fallback.write_text(QWEN_LIKE_TEMPLATE, encoding="utf-8")
    return fallback


def _adapter_tier(
    lock: Lock,
    overlay: Path,
    version: str,
    template: Path | None,
    claude_cli: str | None,
    scratch: Path,
) -> tuple[list[CheckResult], list[CheckResult], list[Verdict]]:
    """(overlay checks, vanilla checks, witness verdicts)."""
    python = ensure_env(version, env_dir())
    rendered = _template(overlay, template, scratch)
    package = overlay_package(python, overlay / ROOTFS, lock.patchsets[0].source_root, scratch)
    results = {}
    for name, path in (("vanilla", None), ("overlay", package)):
        status = err_console.status(f"adapter tier, {name}: sglang {version}")
        with status, adapter_endpoint(python, rendered, path) as url:
            results[name] = run_suite(SmokeOptions(url, claude_cli=claude_cli), ADAPTER_CHECKS)
    checks = [overlay_files(lock, package), *results["overlay"]]
    return checks, results["vanilla"], judge(lock.patches, results["vanilla"], results["overlay"])


def _boot_tier(lock: Lock, overlay: Path, scratch: Path) -> list[CheckResult]:
    """Real SGLang on CPU (tiny local model, NEXTN MTP), the overlay first on its path."""
    python = ensure_boot_env(env_dir())
    model = env_dir() / "tiny-mtp"
    if not (model / "config.json").is_file():
        build_tiny_model(python, model)
    package = overlay_package(python, overlay / ROOTFS, lock.patchsets[0].source_root, scratch)
    options_for = functools.partial(
        SmokeOptions, speculative_algorithm="NEXTN", max_tokens=16, prefix_rules=40
    )
    status = err_console.status(f"boot tier: sglang {BOOT_SGLANG} on CPU with NEXTN")
    with status, boot_endpoint(python, model, package) as url:
        results = run_suite(options_for(url), BOOT_CHECKS)
    return [overlay_files(lock, package), *results]


def run(
    overlay: Path,
    tier: str,
    sglang_version: str,
    chat_template: Path | None,
    claude_cli: str | None,
    as_json: bool,
    junit: Path | None,
) -> int:
    lock = read_lock(overlay)
    verdicts: list[Verdict] = []
    vanilla: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="patchkeeper-verify-") as scratch:
        if tier == "adapter":
            checks, vanilla, verdicts = _adapter_tier(
                lock, overlay, sglang_version, chat_template, claude_cli, Path(scratch)
            )
            title = f"verify adapter tier: {lock.image.ref} + overlay (sglang {sglang_version})"
        elif tier == "boot":
            checks = _boot_tier(lock, overlay, Path(scratch))
            title = f"verify boot tier: sglang {BOOT_SGLANG} on CPU + overlay of {lock.image.ref}"
        else:
            raise ConfigError(f"--tier {tier!r}: choose adapter or boot")
    ok = reporting.passed(checks)
    if as_json:
        doc = {
            "overlay": str(overlay),
            "tier": tier,
            "passed": ok,
            "checks": reporting.as_json(checks),
            "vanilla": reporting.as_json(vanilla),
            "patches": [asdict(v) for v in verdicts],
        }
        out_console.print_json(json.dumps(doc))
    else:
        reporting.print_table(checks, out_console, title)
        if verdicts:
            table = Table(title="witnesses")
            for column in ("patch", "witness", "vanilla", "overlay", "verdict"):
                table.add_column(column)
            for v in verdicts:
                table.add_row(v.patch, v.witness or "-", v.vanilla, v.overlay, v.summary)
            out_console.print(table)
    if junit:
        reporting.write_junit(checks, junit, f"patchkeeper.verify.{tier}")
    summary = reporting.markdown(checks, title) + "".join(
        f"- `{v.patch}`: {v.summary}\n" for v in verdicts
    )
    reporting.append_step_summary(summary + "\n")
    return EXIT_OK if ok else EXIT_CONFLICT
