"""The boot tier: real SGLang 0.5.23 on CPU with a tiny local model and NEXTN (MTP).

One boot serves an overlay synced from a nightly-shaped image that holds 0.5.23's real
Anthropic `protocol.py`, with a probe file and the shipped billing-line patch; one more
serves vanilla 0.5.23, where the billing witness must fail on the same radix cache.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import docker.errors
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import History
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import PROTOCOL, SOURCE_ROOT
from patchkeeper.demo.setup import Demo
from patchkeeper.image.identity import REVISION_LABEL
from patchkeeper.overlay.compose import ROOTFS
from patchkeeper.paths import env_dir
from patchkeeper.verify.cpu.env import boot_model, ensure_boot_env
from patchkeeper.verify.image_sglang import git_blob_sha
from patchkeeper.verify.runtime import boot_endpoint
from patchkeeper.verify.sglang_env import installed_package
from patchkeeper.verify.smoke import CACHED_SHARE
from tests.names import unique

PROBE = "python/sglang/patchkeeper_probe.py"
BILLING_DIFF = (
    Path(__file__).resolve().parents[2] / "patchsets/sglang-claude-code/drop-billing-line.diff"
)
PROTOCOL_0523 = "1ed25902be66681e667adaef8254263a45d78cad"  # the diff's index line names it
READ = re.compile(r"turn 2 read (\d+) of turn 1's (\d+) prompt tokens from the cache")


def _protocol_0523() -> bytes:
    """0.5.23's real protocol.py, as the boot venv has it installed."""
    package = installed_package(ensure_boot_env(env_dir()))
    data = (package / PROTOCOL.removeprefix("python/")).read_bytes()
    assert git_blob_sha(data) == PROTOCOL_0523
    return data


def _cached(reason: str) -> tuple[int, int]:
    found = READ.match(reason)
    assert found, reason
    return int(found[1]), int(found[2])


def test_boot_tier_serves_the_overlay_with_speculative_decoding(
    demo: Demo, docker_client: Any, tmp_path: Path
) -> None:
    protocol = _protocol_0523()
    history = History(tmp_path / "work", {PROTOCOL: protocol})
    url = history.publish(tmp_path / "upstream.git")
    commit = history.head()
    repository = unique("pk-test/sglang-0523")
    image = f"{repository}:nightly-dev-cu13-20260701-{commit[:8]}"
    build_image(
        docker_client,
        image,
        {str(SOURCE_ROOT): history.source_tree(commit, tmp_path / "src")},
        labels={REVISION_LABEL: commit},
    )
    probe = tmp_path / "probe.diff"
    probe.write_text(f"--- /dev/null\n+++ b/{PROBE}\n@@ -0,0 +1 @@\n+OVERLAID = True\n")
    patchset = tmp_path / "probe.yaml"
    patchset.write_text(
        f"upstream: {{git: {url}}}\nsource_root: {SOURCE_ROOT}\npatches:\n"
        f"  - diff: {probe}\n    why: proves the overlay is what the server loads\n"
        f"  - diff: {BILLING_DIFF}\n    why: the billing line busts the prefix\n"
        "    witness: billing_header_prefix\n"
    )
    recipe = tmp_path / "cpu.yaml"
    recipe.write_text(
        demo.recipe.read_text()
        .replace("[sglang-demo.yaml]", f"[{patchset}]")
        .replace(demo.image.rpartition(":")[0], repository)
    )
    runner = CliRunner()
    LOCAL = ["--image-source", "engine"]  # the image is in the engine only
    try:
        synced = runner.invoke(
            app,
            ["sync", "--recipe", str(recipe), "--out", str(tmp_path / "o"), "--json", *LOCAL],
        )
        assert synced.exit_code == 0, synced.stdout
        overlay = json.loads(synced.stdout)["overlay"]
        done = runner.invoke(
            app, ["verify", "--overlay", overlay, "--tier", "boot", "--runtime", "host", "--json"]
        )
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)
    doc = json.loads(done.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert done.exit_code == 0, checks
    assert (
        checks["overlay_files"]["status"] == "passed"
        and "2 file" in checks["overlay_files"]["reason"]
    )
    for name in (
        "speculative",
        "messages_basic",
        "mid_conversation_system",
        "prefix_cache",
        "concurrency",
        "sse_grammar",
        "billing_header_prefix",
    ):
        assert checks[name]["status"] == "passed", checks[name]
    assert "EAGLE" in checks["speculative"]["reason"] or "NEXTN" in checks["speculative"]["reason"]
    # The server loaded 0.5.23's protocol.py with the shipped diff applied, byte for byte
    # (overlay_files), and its radix cache served nearly all of turn 1 to turn 2.
    expected = tmp_path / "applied"
    (expected / PROTOCOL).parent.mkdir(parents=True)
    (expected / PROTOCOL).write_bytes(protocol)
    subprocess.run(["git", "apply", str(BILLING_DIFF)], cwd=expected, check=True)
    overlaid = Path(overlay) / ROOTFS / str(SOURCE_ROOT).lstrip("/") / PROTOCOL
    assert overlaid.read_bytes() == (expected / PROTOCOL).read_bytes()
    cached, first = _cached(checks["billing_header_prefix"]["reason"])
    assert cached >= CACHED_SHARE * first, checks["billing_header_prefix"]


def test_vanilla_0523_busts_the_radix_cache_with_the_billing_line() -> None:
    python = ensure_boot_env(env_dir())
    # No draft model: prefill in native torch, not the Triton interpreter (~35 s less),
    # and the same radix cache.
    with boot_endpoint(python, boot_model(python, env_dir()), speculative=False) as url:
        done = CliRunner().invoke(
            app, ["smoke", "--base-url", url, "--check", "billing_header_prefix", "--json"]
        )
    (check,) = json.loads(done.stdout)["checks"]
    assert done.exit_code == 1 and check["status"] == "failed", check
    assert check["reason"].endswith("the per-turn billing line busts the prefix"), check
    cached, first = _cached(check["reason"])
    # Only the head before the billing line's suffix is shared: a few percent at most.
    assert cached * 10 < first, check
