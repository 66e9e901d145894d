"""A venv that boots real SGLang on a CPU-only host (the boot tier).

Unlike the adapter tier's light venv (`patchkeeper.verify.sglang_env`), this one has
torch: the server really loads a (tiny) model and decodes. sglang is installed
`--no-deps`, because its own requirements are the CUDA stack; torch and torchvision
come as the CUDA build (it runs on CPU; the CPU-only torch 2.13 wheel makes PyPI's
torchvision fail with `operator torchvision::nms does not exist`), and the runtime
deps below are the ones whose absence broke the import or boot, pinned to the
versions verified with sglang 0.5.23 (those sglang itself pins are its pins).

The server needs, besides the venv: `SGLANG_USE_CPU_ENGINE=1` (otherwise `is_cpu()`
is false even with `--device cpu`), `TRITON_INTERPRET=1` (the Triton attention
backend, which EAGLE-family decode requires, runs its kernels in the interpreter),
and the `sgl_kernel` stand-in from `sgl_kernel_stub/` ahead of site-packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from patchkeeper.errors import ConfigError
from patchkeeper.verify.sglang_env import cached_venv, run_step

SGLANG_VERSION = "0.5.23"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
RUNTIME = (
    # pinned by sglang 0.5.23 itself
    "transformers==5.19.0",
    "tokenizers==0.23.2",
    "apache-tvm-ffi==0.1.11",
    "compressed-tensors==0.18.0",
    "sentencepiece==0.2.1",
    "soundfile==0.13.1",
    # the adapter's imports (fastapi, pydantic, openai, ...), as verified with 0.5.23
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
    "openai==2.8.0",
    "msgspec==0.22.0",
    # the rest of what the CPU boot imports (versions as resolved and booted here)
    "psutil==7.2.2",
    "packaging==26.3",
    "pillow==13.0.0",
    "pyzmq==27.3.0",
    "aiohttp==3.14.5",
    "dill==0.4.1",
    "gguf==0.19.0",
    "jsonschema==4.26.0",
    "uvloop==0.23.0",  # http_server imports it
    "einops==0.8.2",  # eplb.expert_distribution imports it
    "xgrammar==0.2.8",  # the default grammar backend (sglang pins 0.2.7; 0.2.8 booted)
    # installed ahead of the boot, not shown to be needed
    "setproctitle==1.3.8",
    "python-multipart==0.0.34",
    "prometheus-client==0.26.0",
    "partial-json-parser==0.2.1.1.post7",
)
STUB_DIR = Path(__file__).resolve().parent / "sgl_kernel_stub"
TINY_MODEL_SCRIPT = Path(__file__).resolve().parent / "tiny_model.py"


def ensure_boot_env(root: Path, *, base_python: str = sys.executable) -> Path:
    """The python of a venv under `root` that can serve a model with real sglang on CPU.

    Built once (minutes, ~6 GB: the CUDA torch build pulls nvidia libraries) and reused.
    """
    groups = [["--no-deps", f"sglang=={SGLANG_VERSION}"], list(TORCH), list(RUNTIME)]
    return cached_venv(root / f"sglang-boot-{SGLANG_VERSION}", groups, base_python)


def boot_model(python: Path, root: Path) -> Path:
    """The tiny MTP model the boot tier serves, under `root`: built on first use."""
    model = root / "tiny-mtp"
    if not (model / "config.json").is_file():
        build_tiny_model(python, model)
    return model


def build_tiny_model(python: Path, dest: Path, *, mtp: bool = True) -> Path:
    """Run `tiny_model.py` with the boot venv's `python` (it needs torch) into `dest`."""
    command = [str(python), str(TINY_MODEL_SCRIPT), str(dest)]
    if not mtp:
        command.append("--no-mtp")
    run_step(command, f"building the tiny model in {dest}")
    return dest


def launch_command(
    python: Path, model_dir: Path, port: int, speculative: bool
) -> tuple[list[str], dict[str, str]]:
    """The argv and the environment additions that serve `model_dir` on 127.0.0.1:`port`.

    The environment holds only what must be set on top of the caller's own; PYTHONPATH
    is the stub alone (prepend it to any existing value).
    """
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: no such model directory")
    argv = [
        str(python),
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *server_args(speculative),
    ]
    env = {
        "SGLANG_USE_CPU_ENGINE": "1",
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": str(STUB_DIR),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return argv, env


def server_args(speculative: bool) -> list[str]:
    """The flags after the model and address (also what the cpu-tiny-mtp recipe uses)."""
    args = [
        "--device",
        "cpu",
        "--sampling-backend",
        "pytorch",
        "--disable-cuda-graph",
        "--skip-server-warmup",
        "--mem-fraction-static",
        "0.05",
        # room for the smoke suite's prefix_cache prompt (~3,500 tokens here)
        "--max-total-tokens",
        "8192",
        "--context-length",
        "4096",
        # usage.cache_read_input_tokens (smoke's prefix_cache) is only reported with this
        "--enable-cache-report",
        # Claude Code sends `thinking`; without a reasoning parser the adapter answers 400
        "--reasoning-parser",
        "qwen3",
    ]
    if not speculative:
        return [*args, "--attention-backend", "torch_native"]
    return [
        *args,
        "--attention-backend",
        "triton",
        "--disable-overlap-schedule",
        "--speculative-algorithm",
        "NEXTN",
        "--speculative-num-steps",
        "1",
        "--speculative-eagle-topk",
        "1",
        "--speculative-num-draft-tokens",
        "2",
    ]
