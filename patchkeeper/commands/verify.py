"""`patchkeeper verify`: prove an overlay, and each patch's witness, against the protocol."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError
from patchkeeper.overlay.compose import ROOTFS, TEMPLATE_FILE
from patchkeeper.overlay.lock import read_lock
from patchkeeper.paths import cache_dir
from patchkeeper.ui import err_console, out_console
from patchkeeper.verify import reporting
from patchkeeper.verify.adapter import adapter_endpoint
from patchkeeper.verify.sglang_env import ensure_env, overlay_package
from patchkeeper.verify.smoke import SmokeOptions, run_suite
from patchkeeper.verify.witness import judge

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


def run(
    overlay: Path,
    tier: str,
    sglang_version: str,
    chat_template: Path | None,
    claude_cli: str | None,
    as_json: bool,
    junit: Path | None,
) -> int:
    if tier != "adapter":
        raise ConfigError(f"--tier {tier}: only the adapter tier is available in this version")
    lock = read_lock(overlay)
    python = ensure_env(sglang_version, cache_dir() / "sglang-envs")
    with tempfile.TemporaryDirectory(prefix="patchkeeper-verify-") as scratch:
        template = overlay / TEMPLATE_FILE
        if chat_template is not None:
            template = chat_template
        elif not template.is_file():
            template = Path(scratch) / "qwen-like.jinja"
            template.write_text(QWEN_LIKE_TEMPLATE, encoding="utf-8")
        root = lock.patchsets[0].source_root
        package = overlay_package(python, overlay / ROOTFS, root, Path(scratch) / "site")
        results = {}
        for name, path in (("vanilla", None), ("overlay", package)):
            status = err_console.status(f"adapter tier, {name}: sglang {sglang_version}")
            with status, adapter_endpoint(python, template, path) as url:
                options = SmokeOptions(url, claude_cli=claude_cli)
                results[name] = run_suite(options, ADAPTER_CHECKS)
    verdicts = judge(lock.patches, results["vanilla"], results["overlay"])
    ok = reporting.passed(results["overlay"])
    title = f"verify adapter tier: {lock.image.ref} + overlay (sglang {sglang_version})"
    if as_json:
        doc = {
            "overlay": str(overlay),
            "tier": tier,
            "sglang": sglang_version,
            "passed": ok,
            "checks": reporting.as_json(results["overlay"]),
            "vanilla": reporting.as_json(results["vanilla"]),
            "patches": [asdict(v) for v in verdicts],
        }
        out_console.print_json(json.dumps(doc))
    else:
        reporting.print_table(results["overlay"], out_console, title)
        table = Table(title="witnesses")
        for column in ("patch", "witness", "vanilla", "overlay", "verdict"):
            table.add_column(column)
        for v in verdicts:
            table.add_row(v.patch, v.witness or "-", v.vanilla, v.overlay, v.summary)
        out_console.print(table)
    if junit:
        reporting.write_junit(results["overlay"], junit, "patchkeeper.verify.adapter")
    summary = reporting.markdown(results["overlay"], title) + "".join(
        f"- `{v.patch}`: {v.summary}\n" for v in verdicts
    )
    reporting.append_step_summary(summary + "\n")
    return EXIT_OK if ok else EXIT_CONFLICT
