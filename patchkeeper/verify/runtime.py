"""Serving what the suite runs against on the host: the adapter tier and the CPU boot tier.

Adapter tier: SGLang's real Anthropic adapter in its own torch-free venv, in front
of a scripted chat engine that still renders every conversation through the
recipe's chat template, so template-level failures show up as they would in the
real server. Boot tier: real SGLang on CPU with a tiny local model and MTP
(NEXTN) speculative decoding. Either way the overlay is a copy of the package
with the overlay's files laid over it, put first on PYTHONPATH. (`image_runtime`
serves from the image itself.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

import httpx

from patchkeeper.errors import ServerError
from patchkeeper.verify.cpu.env import launch_command

SERVER = Path(__file__).with_name("adapter_server.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(
    argv: list[str], env: Mapping[str, str], base_url: str, deadline_s: float
) -> Iterator[str]:
    """Run a server until the block ends; yield its URL once /health answers."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        try:
            wait_healthy(base_url, lambda: process.poll() is None, output, deadline_s)
            yield base_url
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_healthy(
    base_url: str, alive: Callable[[], bool], output: Callable[[], str], deadline_s: float
) -> None:
    """Return once GET /health answers 200; raise with the server's last output if it
    exits or the deadline passes first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    state = "exited" if not alive() else f"not healthy after {deadline_s:.0f} s"
    tail = output()[-3000:].strip() or "(no output)"
    raise ServerError(f"server {state}; its last output:\n{tail}")


def _environment(extra: Mapping[str, str], overlay: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **extra}
    paths = [p for p in (extra.get("PYTHONPATH"), str(overlay) if overlay else None) if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def adapter_endpoint(
    python: Path, template: Path, pythonpath: Path | None = None
) -> AbstractContextManager[str]:
    """Serve the adapter (overlaid when `pythonpath` is given)."""
    port = free_port()
    argv = [
        str(python),
        str(SERVER),
        "--port",
        str(port),
        "--chat-template",
        str(template),
        "--log-level",
        "warning",
        # Cached tokens are the rendered prompts' shared prefix: billing_header_prefix's.
        "--enable-cache-report",
    ]
    return served(argv, _environment({}, pythonpath), f"http://127.0.0.1:{port}", 90.0)


def boot_endpoint(
    python: Path,
    model: Path,
    pythonpath: Path | None = None,
    deadline_s: float = 300.0,
    *,
    speculative: bool = True,
) -> AbstractContextManager[str]:
    """Boot real SGLang on CPU with NEXTN speculative decoding (overlaid when given).
    Without `speculative`, prefill runs in native torch instead of the Triton
    interpreter: many times faster, the same radix cache."""
    port = free_port()
    argv, extra = launch_command(python, model, port, speculative=speculative)
    return served(argv, _environment(extra, pythonpath), f"http://127.0.0.1:{port}", deadline_s)
