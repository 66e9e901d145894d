"""Benchmark: what Claude Code's per-turn billing line costs the radix cache, vanilla vs patched.

Boots real SGLang 0.5.23 on the CPU as the boot tier does (`boot_endpoint`: the tiny
local model, NEXTN, `--enable-cache-report`) twice: vanilla, and with the shipped
`drop-billing-line.diff` laid over the package as verify lays an overlay. Against each
it replays Claude Code's captured request over three turns (the `billing_header_prefix`
check's requests, `smoke.claude_code_turn`: a fresh billing line per turn) and prints,
per turn: prompt tokens, cached tokens (`cache_read_input_tokens`), tokens prefilled
(prompt - cached) and the time to first token (the wall time of a one-token reply).

Tokens prefilled is what carries over to a GPU; on this tiny CPU model TTFT is
indicative only (prefill under the Triton interpreter, on a shared CPU).

Run: nice -n 10 .venv/bin/python benchmarks/prefix_cache.py [--turns 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from patchkeeper.patching.diff import parse_diff
from patchkeeper.patching.hunks import replay, split_lines
from patchkeeper.paths import env_dir
from patchkeeper.verify.cpu.env import SGLANG_VERSION, boot_model, ensure_boot_env
from patchkeeper.verify.replies import Message, Models
from patchkeeper.verify.runtime import boot_endpoint
from patchkeeper.verify.sglang_env import installed_package, overlay_package
from patchkeeper.verify.smoke import FOLLOW_UPS, Client, SmokeOptions, claude_code_turn

PATCH = Path(__file__).resolve().parents[1] / "patchsets/sglang-claude-code/drop-billing-line.diff"
ROOT = PurePosixPath("/src")  # where the overlay's rootfs puts the checkout


@dataclass(frozen=True)
class Turn:
    prompt: int
    cached: int
    ttft_s: float

    @property
    def prefilled(self) -> int:
        return self.prompt - self.cached


def patched_package(python: Path, scratch: Path) -> Path:
    """The installed sglang with the shipped diff applied, laid over it as an overlay."""
    base = installed_package(python)
    rootfs = scratch / "rootfs"
    for change in parse_diff(PATCH.read_text(encoding="utf-8"), str(PATCH)):
        vanilla = (base / change.path.relative_to("python")).read_text(encoding="utf-8")
        target = rootfs.joinpath(*ROOT.parts[1:], *change.path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(replay(split_lines(vanilla), change.hunks)), encoding="utf-8")
    return overlay_package(base, rootfs, str(ROOT), scratch / "package")


def turns(url: str, count: int) -> list[Turn]:
    client = Client(SmokeOptions(url))
    client.model = client.get("/v1/models", Models).data[0].id
    measured = []
    for turn in range(count):
        started = time.monotonic()
        usage = client.post("/v1/messages", claude_code_turn(turn, client.model, 1), Message).usage
        ttft = time.monotonic() - started
        measured.append(Turn(usage.prompt_tokens(), usage.cache_read_input_tokens or 0, ttft))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3, choices=range(1, len(FOLLOW_UPS) + 2))
    count = parser.parse_args().turns
    python = ensure_boot_env(env_dir())
    model = boot_model(python, env_dir())
    with tempfile.TemporaryDirectory(prefix="patchkeeper-prefix-") as scratch:
        runs = {}
        for name, package in (
            ("vanilla", None),
            ("patched", patched_package(python, Path(scratch))),
        ):
            with boot_endpoint(python, model, package) as url:
                runs[name] = turns(url, count)
    print(f"sglang {SGLANG_VERSION} on CPU (tiny model, NEXTN), Claude Code's request shape")
    print(
        "| turn | "
        + " | ".join(f"{n} prompt | {n} cached | {n} prefilled | {n} TTFT s" for n in runs)
        + " |"
    )
    print("|---" * (1 + 4 * len(runs)) + "|")
    for i in range(count):
        cells = [
            f"{t.prompt} | {t.cached} | {t.prefilled} | {t.ttft_s:.1f}"
            for t in (runs[n][i] for n in runs)
        ]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    for name, measured in runs.items():
        later = measured[1:]
        prefilled = sum(t.prefilled for t in later)
        prompt = sum(t.prompt for t in later)
        print(f"- {name}: turns 2-{count} prefilled {prefilled} of {prompt} prompt tokens")


if __name__ == "__main__":
    main()
