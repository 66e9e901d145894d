"""Nightly-shaped images with a real Python and SGLang 0.5.13, built without Docker Hub.

A real nightly has Python, SGLang installed from its source checkout at
/sgl-workspace/sglang (importable from `python/`, with the checkout's `.git`), and
the packages SGLang's HTTP layer imports. The image built here has the same shape,
minus torch and CUDA (the adapter tier needs neither):

* base (slow, cached): Debian bookworm from `debootstrap` (deb.debian.org), imported
  into the engine; pip then installs the sglang 0.5.13 wheel `--no-deps` and the
  adapter's requirements (`sglang_env.requirements`); the wheel's package directory
  is replaced by a `.pth` entry for the checkout, as an editable install would have it.
  Tagged `pk-test/python-sglang-base:<sha256 of its inputs>`, so reruns reuse it.
* nightly (seconds): the base plus a checkout at a commit of the demo history, with
  the rest of the 0.5.13 package from the PyPI wheel beside the tracked files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
from docker.types import Mount
from filelock import FileLock

from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import SOURCE_ROOT
from patchkeeper.image.identity import REVISION_LABEL
from tests.names import unique

BASE_REPOSITORY = "pk-test/python-sglang-base"  # a cache keyed by its inputs, shared on purpose
NIGHTLY_REPOSITORY = unique("pk-test/python-sglang")  # this run's; removed at its end
SGLANG = "0.5.13"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-pip")
# Removed from the debootstrap tree before import: ~140 MB nobody reads, which the
# vfs storage driver would otherwise copy into every container.
PRUNED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale")
PIP = "python3 -m pip install --break-system-packages --no-input --no-cache-dir --quiet"
# The package directory pip wrote gives way to the checkout, as with `pip install -e`.
EDITABLE = (
    "import importlib.util, pathlib, shutil;"
    "package = pathlib.Path(importlib.util.find_spec('sglang').submodule_search_locations[0]);"
    "shutil.rmtree(package);"
    f"(package.parent / 'sglang.pth').write_text('{SOURCE_ROOT}/python\\n')"
)
HOST_CA = "/etc/patchkeeper-host-ca.pem"


# What the adapter imports, pinned as first verified with 0.5.13 (the image's tag hashes
# this script, so the pins stay literal here).
EXTRAS = (
    "fastapi==0.165.0",
    "pydantic==2.14.3",
    "uvicorn==0.54.0",
    "jinja2==3.1.6",
    "orjson==3.13.0",
    "numpy==2.4.6",
    "pybase64==1.5.1",
    "requests==2.34.2",
    "tqdm==4.70.1",
    "ipython==9.18.1",
    "openai==2.6.1",
)


def _install_script() -> str:
    sglang, extras = f"sglang=={SGLANG}", EXTRAS
    return f'set -e; {PIP} --no-deps {sglang}; {PIP} {" ".join(extras)}; python3 -c "{EDITABLE}"'


def base_inputs() -> dict[str, Any]:
    """Everything the base image is made from: its tag is their hash."""
    return {
        "suite": SUITE,
        "mirror": MIRROR,
        "variant": "minbase",
        "packages": PACKAGES,
        "pruned": PRUNED,
        "install": _install_script(),
    }


def _host_ca_bundle() -> str:
    """The CA bundle this host's pip trusts (a TLS-intercepting proxy's CA included)."""
    return (
        os.environ.get("PIP_CERT")
        or ssl.get_default_verify_paths().cafile
        or ("/etc/ssl/certs/ca-certificates.crt")
    )


def _debootstrap(rootfs: Path) -> None:
    done = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({done.returncode}): {done.stdout[-2000:]}")
    for path in PRUNED:
        shutil.rmtree(rootfs / path)
        (rootfs / path).mkdir()


def _pip_install(client: Any, imported: str, repository: str, tag: str) -> None:
    """Run the install in a container of `imported` (host network) and commit it."""
    container = client.containers.run(
        imported,
        ["sh", "-c", _install_script()],
        detach=True,
        network_mode="host",
        environment={"PIP_CERT": HOST_CA},
        mounts=[Mount(HOST_CA, _host_ca_bundle(), type="bind", read_only=True)],
    )
    try:
        status = container.wait()
        if status["StatusCode"] != 0:
            logs = container.logs().decode("utf-8", "replace")
            raise RuntimeError(f"pip install in the base image failed: {logs[-3000:]}")
        container.commit(repository, tag, changes=['CMD ["python3"]'])
    finally:
        container.remove(force=True)


def base_image(client: Any, lock_dir: Path) -> str:
    """The tag of the cached base image, built first when the engine lacks it."""
    key = hashlib.sha256(json.dumps(base_inputs(), sort_keys=True).encode()).hexdigest()[:16]
    reference = f"{BASE_REPOSITORY}:{key}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "python-sglang-base.lock")):
        try:
            client.images.get(reference)
            return reference
        except docker.errors.ImageNotFound:
            pass
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="pk-debootstrap-") as scratch:
            rootfs, archive = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
            _debootstrap(rootfs)
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
            imported = f"{BASE_REPOSITORY}-debootstrap:{key}"
            client.api.import_image_from_file(
                str(archive), repository=imported.split(":")[0], tag=key
            )
        try:
            _pip_install(client, imported, BASE_REPOSITORY, key)
        finally:
            client.images.remove(imported, force=True)
        print(f"built {reference} in {time.monotonic() - started:.0f} s")
    return reference


def nightly_image(
    client: Any, base: str, checkout: Path, package: Mapping[str, bytes], tag: str, commit: str
) -> str:
    """`checkout` (a git clone) at SOURCE_ROOT on `base`, with the rest of `package`
    (repository-relative paths) written beside its tracked files; returns the reference."""
    untracked = {
        str(SOURCE_ROOT / path): data
        for path, data in package.items()
        if not (checkout / path).exists()
    }
    reference = f"{NIGHTLY_REPOSITORY}:{tag}"
    build_image(
        client,
        reference,
        {str(SOURCE_ROOT): checkout},
        untracked,
        labels={REVISION_LABEL: commit},
        with_busybox=False,
        base=base,
    )
    return reference
