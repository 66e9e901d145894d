"""The adapter tier: SGLang's real Anthropic adapter, vanilla or overlaid, on the host.

The adapter runs in its own venv (sglang installed without its GPU stack) in front
of a scripted chat engine that still renders every conversation through the
recipe's chat template, so template-level failures show up as they would in the
real server. No GPU, no model, no image pull.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from patchkeeper.errors import ImageError

SERVER = Path(__file__).with_name("adapter_server.py")
START_DEADLINE_S = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def adapter_endpoint(python: Path, template: Path, pythonpath: Path | None = None) -> Iterator[str]:
    """Serve the adapter (overlaid when `pythonpath` is given); yield its base URL."""
    port = _free_port()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                str(python),
                str(SERVER),
                "--port",
                str(port),
                "--chat-template",
                str(template),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base_url, process, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: object) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    log.seek(0)  # type: ignore[attr-defined]
    tail = log.read()[-1500:].decode("utf-8", "replace")  # type: ignore[attr-defined]
    raise ImageError(f"the SGLang adapter did not become healthy: {tail.strip()}")
