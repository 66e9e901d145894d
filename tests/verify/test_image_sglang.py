"""The host adapter tier runs the image's own sglang: its python/ tree, read from the image.

Upstream here is a git repository whose commits carry real releases' `python/sglang`
trees (from their PyPI wheels) and a `python/pyproject.toml` declaring the wheel's
dependencies; each nightly image holds a checkout at one commit. Each image also holds
the setuptools-scm `_version.py` an install writes (untracked); the dev commit's says
`0.5.24.dev123+g...`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
import pytest
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import SOURCE_ROOT, TAG_PATTERN
from patchkeeper.image.identity import REVISION_LABEL
from patchkeeper.verify.image_sglang import PYPROJECT, git_blob_sha, tree_version
from patchkeeper.verify.sglang_env import adapter_requirements, declared_in_wheel, release_wheel
from tests.conftest import WHEEL_CACHE

RELEASES = ("0.5.10", "0.5.16", "0.5.20", "0.5.23")
DEV = "0.5.24.dev123+g1a2b3c4"
RECIPE = """\
image: {repository}
tags: '{tags}'
patchsets: [patchset.yaml]
service:
  name: sglang
  port: 30000
  model: {{path: /models/tiny, host_path: {model}}}
  gpus: null
"""
PATCHSET = """\
upstream: {{git: {url}, branch: main}}
source_root: {root}
patches: []
"""


def git(cwd: Path, *args: str) -> str:
    env_free = [
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    done = subprocess.run(
        ["git", *env_free, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _server_python(name: str) -> bool:
    """The wheel's Python modules of the server side (`sglang/*.py`, `sglang/srt/**`): what
    the adapter can reach, at a third of the wheel (kernel configs and the frontend
    language stay out, to keep five test images small)."""
    path = PurePosixPath(name)
    server = len(path.parts) == 2 or (len(path.parts) > 2 and path.parts[1] == "srt")
    return path.parts[0] == "sglang" and path.suffix == ".py" and server


def release_tree(version: str) -> dict[str, bytes]:
    """The release's server-side Python from its wheel, laid out as in a checkout, and a
    pyproject.toml declaring the wheel's dependencies."""
    wheel = release_wheel(version, WHEEL_CACHE / "envs")
    with zipfile.ZipFile(wheel) as archive:
        files = {
            f"python/{name}": archive.read(name)
            for name in archive.namelist()
            if _server_python(name) and name != "sglang/_version.py"  # generated: untracked
        }
    declared = json.dumps(declared_in_wheel(wheel))
    files[str(PYPROJECT)] = (
        f'[project]\nname = "sglang"\nversion = "{version}"\ndependencies = {declared}\n'
    ).encode()
    return files


def commit_tree(repo: Path, files: dict[str, bytes], message: str) -> str:
    subprocess.run(["rm", "-rf", str(repo / "python")], check=True)
    for name, data in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Nightly:
    version: str
    overlay: Path


@pytest.fixture(scope="module")
def nightlies(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Nightly]]:
    """One synced (patch-free) overlay per nightly image: four releases and a dev tree."""
    work = tmp_path_factory.mktemp("release-upstream")
    repo = work / "sglang"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    repository = f"pk-test/sglang-releases-{secrets.token_hex(4)}"
    commits = {v: commit_tree(repo, release_tree(v), f"Release {v}") for v in RELEASES}
    dev_files = release_tree("0.5.23")
    dev_files[str(PYPROJECT)] = dev_files[str(PYPROJECT)].replace(b'"0.5.23"', b'"0.5.24"')
    commits[DEV] = commit_tree(repo, dev_files, "Bump to 0.5.24 (development)")
    built: list[str] = []
    items: list[Nightly] = []
    try:
        for day, (version, commit) in enumerate(commits.items(), start=10):
            checkout = work / f"checkout-{day}"
            git(work, "clone", "-q", "--no-local", str(repo), str(checkout))
            git(checkout, "checkout", "-q", "-B", "main", commit)
            # setuptools-scm writes it when the image installs the checkout: untracked.
            generated = f"__version__ = version = '{version}'\n".encode()
            extra = {f"{SOURCE_ROOT}/python/sglang/_version.py": generated}
            reference = f"{repository}:nightly-dev-cu13-202606{day}-{commit[:8]}"
            build_image(
                docker_client,
                reference,
                {str(SOURCE_ROOT): checkout},
                extra,
                labels={REVISION_LABEL: commit},
                with_busybox=False,
            )
            built.append(reference)
            folder = work / f"recipe-{day}"
            folder.mkdir()
            (folder / "patchset.yaml").write_text(PATCHSET.format(url=repo, root=SOURCE_ROOT))
            recipe = folder / "recipe.yaml"
            recipe.write_text(
                RECIPE.format(repository=repository, tags=TAG_PATTERN, model=work / "model")
            )
            done = CliRunner().invoke(
                app,
                [
                    "sync",
                    "--recipe",
                    str(recipe),
                    "--image",
                    reference,
                    "--out",
                    str(folder / "o"),
                    "--image-source",
                    "engine",
                    "--json",
                ],
            )
            doc = json.loads(done.stdout)
            assert done.exit_code == 0, doc
            items.append(Nightly(version, Path(doc["overlay"])))
        yield items
    finally:
        for reference in built:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(reference, force=True)


# The bug matrix these releases must show on vanilla (see the closing survey).
EXPECTED = {
    "0.5.10": {"mid_conversation_system": "failed", "tool_stream_blocks": "failed"},
    "0.5.16": {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
    "0.5.20": {"mid_conversation_system": "passed", "tool_stream_blocks": "passed"},
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
        assert done.exit_code == (0 if doc["passed"] else 1)


def test_the_sglang_version_option_is_an_override_the_json_names(nightlies: list[Nightly]) -> None:
    newest = nightlies[-1]
    done = CliRunner().invoke(
        app,
        [
            "verify",
            "--overlay",
            str(newest.overlay),
            "--tier",
            "adapter",
            "--runtime",
            "host",
            "--sglang-version",
            "0.5.10",
            "--json",
        ],
    )
    doc = json.loads(done.stdout)
    assert doc["sglang"] == {"version": "0.5.10", "origin": "sglang 0.5.10 from PyPI"}
    vanilla = {c["name"]: c["status"] for c in doc["vanilla"]}
    assert vanilla["mid_conversation_system"] == "failed"  # 0.5.10's code, not the image's


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
