"""Nightly-shaped images of real SGLang releases, and their synced overlays.

Upstream here is a git repository whose commits carry real releases' `python/sglang`
trees (from their PyPI wheels) and a `python/pyproject.toml` declaring the wheel's
dependencies; each nightly image holds a checkout at one commit and nothing else (no
Python: the host runtimes serve from the image's tree). Each image also holds the
setuptools-scm `_version.py` an install writes (untracked); the dev commit's says
`0.5.24.dev123+g...`. Each nightly is synced once, from the engine, with the shipped
billing-line patch where it ports (every release from 0.5.14 on).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import SOURCE_ROOT, TAG_PATTERN
from patchkeeper.image.identity import REVISION_LABEL
from patchkeeper.verify.image_sglang import PYPROJECT
from patchkeeper.verify.sglang_env import declared_in_wheel, release_wheel
from tests.conftest import WHEEL_CACHE
from tests.names import unique

REPO = Path(__file__).resolve().parents[1]
BILLING_DIFF = REPO / "patchsets/sglang-claude-code/drop-billing-line.diff"
RELEASES = ("0.5.10", "0.5.14", "0.5.16", "0.5.23")
DEV = "0.5.24.dev123+g1a2b3c4"
DEV_TREE = "0.5.23"  # the dev commit is this release's tree with the version bumped
WITHOUT_BILLING_FIX = ("0.5.10",)  # before 0.5.14's request model: the diff has no anchor
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
patches: {patches}
"""
BILLING_PATCH = """
  - diff: {diff}
    why: the shipped patchset's billing-line patch, byte for byte
    witness: billing_header_prefix
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


def release_file(version: str, name: str) -> bytes:
    """One file of the release's wheel, by its path in the package (`sglang/...`)."""
    with zipfile.ZipFile(release_wheel(version, WHEEL_CACHE / "envs")) as archive:
        return archive.read(name)


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
    tree: str  # the release whose files the image holds
    overlay: Path  # synced from the engine; carries the billing patch unless billing_fix_absent

    @property
    def billing_fix_absent(self) -> bool:
        return self.version in WITHOUT_BILLING_FIX


def _sync(folder: Path, reference: str) -> Path:
    """The overlay `sync` wrote for the recipe in `folder`."""
    done = CliRunner().invoke(
        app,
        [
            "sync",
            "--recipe",
            str(folder / "recipe.yaml"),
            "--image",
            reference,
            "--out",
            str(folder / "o"),
            "--image-source",
            "engine",  # the image is local: nothing goes through the registry
            "--json",
        ],
    )
    doc = json.loads(done.stdout)
    assert done.exit_code == 0, doc
    return Path(doc["overlay"])


def release_nightlies(docker_client: Any, work: Path) -> Iterator[list[Nightly]]:
    """One synced overlay per nightly image: four releases and a dev tree; the images
    are removed when the caller is done."""
    repo = work / "sglang"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    repository = unique("pk-test/sglang-releases")
    commits = {v: commit_tree(repo, release_tree(v), f"Release {v}") for v in RELEASES}
    dev_files = release_tree(DEV_TREE)
    bump = (f'"{DEV_TREE}"'.encode(), b'"0.5.24"')
    dev_files[str(PYPROJECT)] = dev_files[str(PYPROJECT)].replace(*bump)
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
            billing = version not in WITHOUT_BILLING_FIX
            patches = BILLING_PATCH.format(diff=BILLING_DIFF) if billing else " []"
            (folder / "patchset.yaml").write_text(
                PATCHSET.format(url=repo, root=SOURCE_ROOT, patches=patches)
            )
            (folder / "recipe.yaml").write_text(
                RECIPE.format(repository=repository, tags=TAG_PATTERN, model=work / "model")
            )
            overlay = _sync(folder, reference)
            tree = DEV_TREE if version == DEV else version
            items.append(Nightly(version, tree, overlay))
        yield items
    finally:
        for reference in built:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(reference, force=True)
