"""The host adapter tier runs the image's own sglang: its python/ tree, read from the image.

The nightlies (tests/release_images.py) hold real releases' trees; their overlays carry
the shipped billing-line patch from 0.5.14 on, so each verify also judges its witness.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.verify.image_sglang import PYPROJECT, git_blob_sha, tree_version
from patchkeeper.verify.sglang_env import adapter_requirements
from tests.release_images import DEV, RELEASES, Nightly

# The bug matrix these releases must show on vanilla (see the closing survey).
EXPECTED = {
    "0.5.10": {"mid_conversation_system": "failed", "tool_stream_blocks": "failed"},
    "0.5.14": {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
    "0.5.16": {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
    "0.5.23": {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
    DEV: {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
}


def test_verify_on_the_host_runs_each_images_own_sglang(nightlies: list[Nightly]) -> None:
    assert [n.version for n in nightlies] == [*RELEASES, DEV]
    for nightly in nightlies:
        done = CliRunner().invoke(
            app,
            [
                "verify",
                "--overlay",
                str(nightly.overlay),
                "--tier",
                "adapter",
                "--runtime",
                "host",
                "--json",
            ],
        )
        doc = json.loads(done.stdout)
        assert doc["sglang"]["version"] == nightly.version, doc["sglang"]
        assert "python/ tree of" in doc["sglang"]["origin"], doc["sglang"]
        assert "differ from the commit" not in doc["sglang"]["origin"]
        assert "from PyPI" not in doc["sglang"]["origin"]  # complete trees need no release
        vanilla = {c["name"]: c["status"] for c in doc["vanilla"]}
        for check, status in EXPECTED[nightly.version].items():
            assert vanilla[check] == status, (nightly.version, check, doc["vanilla"])
        # The shipped billing-line patch, judged by its witness on this release's code.
        overlay = {c["name"]: c["status"] for c in doc["checks"]}
        if nightly.billing_fix_absent:
            assert doc["patches"] == [] and "billing_header_prefix" not in overlay
        else:
            assert doc["patches"] == [
                {
                    "patch": "patchset/drop-billing-line",
                    "witness": "billing_header_prefix",
                    "vanilla": "failed",
                    "overlay": "passed",
                    "proven": True,
                    "retirable": False,
                }
            ], (nightly.version, doc["vanilla"], doc["checks"])
        assert done.exit_code == (0 if doc["passed"] else 1)


def test_the_sglang_version_option_is_an_override_the_json_names(nightlies: list[Nightly]) -> None:
    oldest = nightlies[0]  # 0.5.10: its overlay carries no patch to lay over another release
    done = CliRunner().invoke(
        app,
        [
            "verify",
            "--overlay",
            str(oldest.overlay),
            "--tier",
            "adapter",
            "--runtime",
            "host",
            "--sglang-version",
            "0.5.23",
            "--json",
        ],
    )
    doc = json.loads(done.stdout)
    assert doc["sglang"] == {"version": "0.5.23", "origin": "sglang 0.5.23 from PyPI"}
    vanilla = {c["name"]: c["status"] for c in doc["vanilla"]}
    assert vanilla["mid_conversation_system"] == "passed"  # 0.5.23's code, not the image's


def test_versions_are_read_without_running_anything() -> None:
    package = PurePosixPath("python/sglang")
    assert (
        tree_version({package / "_version.py": b"__version__ = version = '0.5.24.dev1+gab'\n"})
        == "0.5.24.dev1+gab"
    )
    assert tree_version({package / "version.py": b'__version__ = "0.5.13"\n'}) == "0.5.13"
    assert tree_version({PYPROJECT: b'[project]\nversion = "0.5.9"\n'}) == "0.5.9"
    wheel_style = b"from sglang._version import __version__\n"
    assert tree_version({package / "version.py": wheel_style}) is None
    assert tree_version({package / "version.py": b"__version__ = open('/etc/x').read()"}) is None


def test_pins_come_from_the_declared_dependencies() -> None:
    pins = adapter_requirements(
        [
            "openai==2.6.1",
            "fastapi",
            "numpy<2",
            "msgspec",
            "pydantic; extra == 'dev'",
            "torch==2.11",
        ]
    )
    assert "openai==2.6.1" in pins and "fastapi==0.165.0" in pins
    assert "numpy<2" in pins and "msgspec==0.22.0" in pins and "pydantic==2.14.3" in pins
    assert not any(p.startswith("torch") for p in pins)
    assert "msgspec==0.22.0" not in adapter_requirements(["openai==2.8.0"])


def test_git_blob_ids_match_git() -> None:
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
