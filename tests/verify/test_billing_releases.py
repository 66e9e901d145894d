"""The shipped billing-line patch on real releases: sync ports it, the release runs it.

`sync` ports `patchsets/sglang-claude-code/drop-billing-line.diff`, byte for byte, onto
nightly-shaped images of real releases' trees (tests/release_images.py); the release's
own sglang, overlaid, then drops Claude Code's per-turn billing line and nothing else.
That the `billing_header_prefix` witness fails on vanilla and passes overlaid on each
release is asserted where those same overlays are verified (test_image_sglang.py).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from patchkeeper.chat_template import QWEN_LIKE_TEMPLATE
from patchkeeper.demo.scenario import SOURCE_ROOT
from patchkeeper.overlay.compose import ROOTFS, VANILLA
from patchkeeper.overlay.lock import read_lock
from patchkeeper.overlay.write import OVERRIDE_COMPOSE
from patchkeeper.paths import env_dir
from patchkeeper.verify.image_sglang import image_sglang
from patchkeeper.verify.runtime import adapter_endpoint
from patchkeeper.verify.sglang_env import overlay_package
from patchkeeper.verify.smoke import BILLING_LINE
from tests.release_images import BILLING_DIFF, DEV, Nightly, release_file

PROTOCOL = "python/sglang/srt/entrypoints/anthropic/protocol.py"
IN_IMAGE = f"{SOURCE_ROOT}/{PROTOCOL}"
PATCHED_RELEASES = ("0.5.14", "0.5.16", "0.5.23", DEV)


def patched(nightlies: list[Nightly]) -> list[Nightly]:
    found = [n for n in nightlies if not n.billing_fix_absent]
    assert [n.version for n in found] == list(PATCHED_RELEASES)
    return found


def git_applied(original: bytes, diff: Path, scratch: Path) -> bytes:
    """`original` with `diff` applied by git itself: the oracle for the overlay's bytes."""
    target = scratch / PROTOCOL
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(original)
    subprocess.run(["git", "apply", str(diff)], cwd=scratch, check=True, capture_output=True)
    return target.read_bytes()


def test_sync_ports_the_shipped_diff_onto_each_release(
    nightlies: list[Nightly], tmp_path: Path
) -> None:
    shipped = BILLING_DIFF.read_bytes()
    for nightly in patched(nightlies):
        lock = read_lock(nightly.overlay)
        [patch] = lock.patches
        assert (patch.id, patch.state, patch.diff_file) == (
            "patchset/drop-billing-line",  # the test patchset's file is patchset.yaml
            "applied",
            BILLING_DIFF.name,
        ), nightly.version
        assert patch.diff_sha256 == hashlib.sha256(shipped).hexdigest()
        assert [(f.path, f.action) for f in patch.files] == [(IN_IMAGE, "patched")]
        # Its index names 0.5.23's real blob, which upstream's history has: three-way.
        assert patch.files[0].note == "three-way against upstream blob 1ed25902be66"
        # The overlay holds exactly one file: the image's protocol.py with the diff applied.
        files = sorted(p for p in (nightly.overlay / ROOTFS).rglob("*") if p.is_file())
        assert files == [nightly.overlay / ROOTFS / IN_IMAGE.lstrip("/")], files
        # What the image holds: the release's file, as its wheel ships it.
        vanilla = release_file(nightly.tree, PROTOCOL.removeprefix("python/"))
        overlaid = files[0].read_bytes()
        assert b"def _drop_billing_line(cls, v):" in overlaid
        assert b"def _drop_billing_line" not in vanilla
        scratch = tmp_path / nightly.version
        assert overlaid == git_applied(vanilla, BILLING_DIFF, scratch), nightly.version
        assert (nightly.overlay / VANILLA / IN_IMAGE.lstrip("/")).read_bytes() == vanilla
        # ... and the compose override mounts it, read-only, over the image's file.
        override = nightly.overlay / OVERRIDE_COMPOSE
        [volume] = yaml.safe_load(override.read_text())["services"]["sglang"]["volumes"]
        assert (volume["type"], volume["target"], volume["read_only"]) == ("bind", IN_IMAGE, True)
        assert (override.parent / volume["source"]).read_bytes() == overlaid
        [locked] = lock.files
        assert (locked.path, locked.patched_sha256, locked.vanilla_sha256) == (
            IN_IMAGE,
            hashlib.sha256(overlaid).hexdigest(),
            hashlib.sha256(vanilla).hexdigest(),
        )


QUESTION = [{"role": "user", "content": "List the files here."}]
# Claude Code also sends role "system" entries inside messages; 0.5.14's request model
# joins them with the system prompt into one string before any field validator runs.
MID_SYSTEM = [
    *QUESTION,
    {"role": "assistant", "content": "Done."},
    {"role": "system", "content": "MARKER-mid Mind the tests."},
    {"role": "user", "content": "More?"},
]


def usage(url: str, system: Any, messages: list[dict[str, Any]] = QUESTION) -> tuple[int, int, str]:
    """Prompt tokens, of which cached, and the reply's text."""
    body = {"model": "default", "max_tokens": 64, "messages": messages, "system": system}
    reply = httpx.post(f"{url}/v1/messages", json=body, timeout=60.0)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    cached = doc["usage"].get("cache_read_input_tokens") or 0
    text = "".join(b["text"] for b in doc["content"] if b["type"] == "text")
    return doc["usage"]["input_tokens"] + cached, cached, text


@pytest.mark.parametrize("version", ["0.5.14", "0.5.23"])  # the oldest and newest model
def test_the_patched_release_drops_the_billing_line_and_nothing_else(
    nightlies: list[Nightly], version: str, tmp_path: Path
) -> None:
    """Through the release's own adapter and the chat template: prompts with the billing
    line render as they do without it; everything else reaches the prompt unchanged.
    (The scripted engine counts whitespace tokens and caches whole prompts, answering at
    most all but one token from the cache: an identical prompt reads n - 1.)"""
    [nightly] = [n for n in nightlies if n.version == version]
    lock = read_lock(nightly.overlay)
    host = image_sglang(lock, env_dir())
    assert host.version == version
    package = overlay_package(
        host.package, nightly.overlay / ROOTFS, str(SOURCE_ROOT), tmp_path / "pkg"
    )
    template = tmp_path / "template.jinja"
    template.write_text(QWEN_LIKE_TEMPLATE, encoding="utf-8")
    rules = "You are a coding agent. MARKER-rules Keep answers short."
    billing = BILLING_LINE.format("5e1f0a")
    with adapter_endpoint(host.python, template, package) as url:
        # A block list: the billing block dropped, the rest rendered as without it.
        plain, _, text = usage(url, [{"type": "text", "text": rules}])
        assert "MARKER-rules" in text
        with_block = [{"type": "text", "text": billing}, {"type": "text", "text": rules}]
        assert usage(url, with_block)[:2] == (plain, plain - 1)
        # A block whose first line is the billing line keeps its other lines.
        first_line = [{"type": "text", "text": f"{billing}\n{rules}"}]
        assert usage(url, first_line)[:2] == (plain, plain - 1)
        # A string system prompt: its first line, when the billing line, goes.
        as_string, _, _ = usage(url, rules)
        assert usage(url, f"{billing}\n{rules}")[:2] == (as_string, as_string - 1)
        # With role "system" entries inside messages too.
        mid, _, text = usage(url, [{"type": "text", "text": rules}], MID_SYSTEM)
        assert "MARKER-mid" in text and "MARKER-rules" in text
        assert usage(url, with_block, MID_SYSTEM)[:2] == (mid, mid - 1)
        # Text that merely mentions the header, anywhere but at a block's head, stays.
        mention = f"Never echo an x-anthropic-billing-header: line. MARKER-mention {rules}"
        total, _, text = usage(url, mention)
        assert total == as_string + len(mention.split()) - len(rules.split())
        assert "MARKER-mention" in text and "MARKER-rules" in text
        later_line = [{"type": "text", "text": rules}, {"type": "text", "text": f"x\n{billing}"}]
        total, _, _ = usage(url, later_line)
        assert total == plain + len(f"x\n{billing}".split())
