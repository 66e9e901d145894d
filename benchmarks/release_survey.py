"""The bug matrix: which adapter-tier checks fail on each vanilla SGLang release.

For every release (default 0.5.8 ... 0.5.23) the release's own Anthropic adapter is
served on the host exactly as `verify --tier adapter --runtime host` serves it (the
wheel unpacked, a venv with the adapter's imports as that release pins them) and the
adapter suite runs against it. Prints one row per release: each check's result, and
how long building and serving took. Venvs are cached (PATCHKEEPER_ENV_DIR), so a
second run costs only the suite.

    nice -n 10 python benchmarks/release_survey.py [--versions 0.5.10 0.5.23] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.errors import PatchkeeperError
from patchkeeper.paths import env_dir
from patchkeeper.verify.runtime import adapter_endpoint
from patchkeeper.verify.sglang_env import ensure_release
from patchkeeper.verify.smoke import SmokeOptions, run_suite
from patchkeeper.verify.tiers import ADAPTER_CHECKS, ON_WITNESS

RELEASES = [f"0.5.{n}" for n in range(8, 24)]
CHECKS = [*(c for c in ADAPTER_CHECKS if c != "claude_code"), *ON_WITNESS]
SHORT = {"passed": "pass", "failed": "FAIL", "not run": "-"}


def survey(version: str, template: Path) -> dict[str, object]:
    started = time.monotonic()
    try:
        host = ensure_release(version, env_dir())
        built = time.monotonic()
        with adapter_endpoint(host.python, template, host.package) as url:
            results = run_suite(SmokeOptions(url), CHECKS)
    except PatchkeeperError as err:
        return {"version": version, "error": str(err).splitlines()[-1][:200]}
    return {
        "version": version,
        "build_s": round(built - started, 1),
        "suite_s": round(time.monotonic() - built, 1),
        "checks": {r.name: {"status": r.status.value, "reason": r.reason} for r in results},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=RELEASES)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="patchkeeper-survey-") as scratch:
        template = Path(scratch) / "qwen-like.jinja"
        template.write_text(QWEN_LIKE_TEMPLATE, encoding="utf-8")
        rows = [survey(v, template) for v in args.versions]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| release | " + " | ".join(CHECKS) + " | build s | suite s |")
    print("|---" * (len(CHECKS) + 3) + "|")
    for row in rows:
        if "error" in row:
            print(f"| {row['version']} | error: {row['error']} |")
            continue
        checks = row["checks"]
        assert isinstance(checks, dict)
        cells = [SHORT[checks[c]["status"]] for c in CHECKS]
        print(
            f"| {row['version']} | "
            + " | ".join(cells)
            + f" | {row['build_s']} | {row['suite_s']} |"
        )
    for row in rows:
        found = row.get("checks") or {}
        assert isinstance(found, dict)
        for name, result in found.items():
            if result["status"] == "failed":
                print(f"- {row['version']} {name}: {result['reason'][:160]}")


if __name__ == "__main__":
    main()
