"""`patchkeeper up` with real Compose (v2 and v1) on the real engine: night to night,
rollback, the drift guard, and a re-sync while the server runs.

The server is busybox httpd (the demo images carry busybox) serving /health from a
mounted directory, with the recipe's real overlay mounted over the image's sources.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.scenario import PROTOCOL, SERVING, SOURCE_ROOT
from patchkeeper.demo.setup import Demo
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.overlay.drift import store_fingerprint
from patchkeeper.overlay.lock import read_lock
from tests.overlay.nights import NEVER_HEALTHY, SERVE, Nights, up

runner = CliRunner()


def served(client: Any, nights: Nights) -> tuple[str, dict[str, str]]:
    """The running container's image id and the sha256 of each overlaid file in it."""
    container = client.containers.get(nights.container)
    assert container.status == "running"
    lock = read_lock((nights.links / "current").resolve())
    paths = [f.path for f in lock.files]
    code, output = container.exec_run(["/bin/sha256sum", *paths])
    assert code == 0, output
    hashes = {line.split()[1]: line.split()[0] for line in output.decode().splitlines()}
    return container.image.id, hashes


def patched(overlay: Path) -> dict[str, str]:
    return {f.path: f.patched_sha256 for f in read_lock(overlay).files}


def test_night_to_night_recreates_the_same_container_name_with_new_image_and_files(
    nights: Nights, docker_client: Any, compose: Compose
) -> None:
    first = up(nights, "--image", nights.night1)
    assert first.exit_code == 0, first.output
    one = (nights.links / "current").resolve()
    assert served(docker_client, nights) == (
        docker_client.images.get(nights.night1).id,
        patched(one),
    )

    second = up(nights, "--image", nights.night2)
    assert second.exit_code == 0, second.output
    two = (nights.links / "current").resolve()
    assert two != one and (nights.links / "previous").resolve() == one
    image, files = served(docker_client, nights)
    assert image == docker_client.images.get(nights.night2).id
    assert files == patched(two) and files != patched(one)
    serving = str(SOURCE_ROOT / SERVING)
    assert f"image:   {nights.night1} -> {nights.night2}" in second.output
    assert f"file:    {serving}: {patched(one)[serving][:12]} -> {patched(two)[serving][:12]}" in (
        second.output
    )
    [container] = docker_client.containers.list(all=True, filters={"name": nights.container})
    assert container.labels["com.docker.compose.project"] == nights.recipe.stem

    gone = runner.invoke(app, ["down", "--recipe", str(nights.recipe), "--out", str(nights.out)])
    assert gone.exit_code == 0, gone.output
    assert docker_client.containers.list(all=True, filters={"name": nights.container}) == []


def test_a_night_that_never_becomes_healthy_is_rolled_back(
    nights: Nights, docker_client: Any, compose: Compose
) -> None:
    assert up(nights, "--image", nights.night1).exit_code == 0
    one = (nights.links / "current").resolve()
    before = served(docker_client, nights)

    nights.write_recipe(NEVER_HEALTHY)
    failed = up(nights, "--image", nights.night2)
    assert failed.exit_code == 1, failed.output
    assert "up failed: service web unhealthy; its last output:" in failed.output
    assert "health probe's last output (exit 1): " in failed.output
    assert f"rolled back: web healthy on {one.name} again" in failed.output
    assert (nights.links / "current").resolve() == one
    assert served(docker_client, nights) == before


def test_a_resync_while_the_server_runs_never_changes_its_mounts(
    nights: Nights, docker_client: Any, demo: Demo, compose: Compose
) -> None:
    assert up(nights, "--image", nights.night1).exit_code == 0
    before = served(docker_client, nights)
    one = (nights.links / "current").resolve()

    # The same tag synced again with the recipe changed: its links move to a new overlay.
    nights.write_recipe(SERVE + " -v")
    args = ["sync", "--recipe", str(nights.recipe), "--out", str(nights.out)]
    assert runner.invoke(app, [*args, "--image", nights.night1]).exit_code == 0
    tag = nights.night1.rsplit(":", 1)[1]
    assert (nights.links / tag).resolve() != one
    assert (nights.links / "latest").resolve() != one

    container = docker_client.containers.get(nights.container)
    container.restart(timeout=2)  # what a reboot or `docker start` does
    assert served(docker_client, nights) == before
    sources = {m["Source"] for m in container.attrs["Mounts"] if "/.store/" in m["Source"]}
    assert sources and all(s.startswith(f"{one}/") for s in sources)
    # Reached through the moved link by hand, compose would name the new store path.
    with compose.project(
        nights.recipe.stem, [nights.links / "latest" / "compose.override.yaml"]
    ) as argv:
        config = subprocess.run([*argv, "config"], capture_output=True, text=True)
    assert str((nights.links / "latest").resolve()) in config.stdout, config.stderr


def test_an_image_whose_files_are_not_the_locks_vanilla_is_refused(
    nights: Nights, docker_client: Any, compose: Compose
) -> None:
    args = ["sync", "--recipe", str(nights.recipe), "--out", str(nights.out), "--json"]
    done = runner.invoke(app, [*args, "--image", nights.night1])
    assert done.exit_code == 0, done.output
    overlay = (nights.links / "latest").resolve()
    lock_file = overlay / "patchkeeper.lock.json"
    lock = read_lock(overlay)
    serving = str(SOURCE_ROOT / SERVING)
    wrong = hashlib.sha256(b"another night's serving.py").hexdigest()
    files = [
        f.model_copy(update={"vanilla_sha256": wrong}) if f.path == serving else f
        for f in lock.files
    ]
    lock = lock.model_copy(update={"files": files})  # as a sync that saw other bytes writes it
    lock = lock.model_copy(update={"fingerprint": store_fingerprint(overlay, lock)})
    lock_file.chmod(0o644)
    lock_file.write_text(lock.dump())

    refused = runner.invoke(app, ["up", "--overlay", str(overlay), "--no-smoke"])
    assert refused.exit_code == 2, refused.output
    assert f"{serving}: image has sha256 " in refused.output
    assert f"lock's vanilla is sha256 {wrong[:12]}" in refused.output
    assert docker_client.containers.list(all=True, filters={"name": nights.container}) == []
    verified = runner.invoke(app, ["verify", "--overlay", str(overlay), "--runtime", "image"])
    assert verified.exit_code == 2 and serving in verified.output


# The issue's compose service, verbatim apart from paths, the image and a bumped port.
USER_COMPOSE = """\
services:
  sglang-qwen36:
    image: {image}
    container_name: {container}
    runtime: nvidia
    environment: [NVIDIA_VISIBLE_DEVICES=all, HF_HOME=/models/hf_cache, SGLANG_ENABLE_SPEC_V2=1]
    volumes:
      - {models}:/models
      - ./sglang-patched-protocol.py:{protocol}:ro
      - ./chat_template_no_thinking.jinja:/models/chat_template_no_thinking.jinja:ro
    ports: ["8072:8072"]
    ipc: host
    ulimits: {{memlock: -1, stack: 67108864}}
    command: >
      python3 -m sglang.launch_server --model-path /models/Qwen3.6-27B-FP8 --tp-size 1
      --mem-fraction-static 0.78 --context-length 256000
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8072/health"]
      interval: 30s
      timeout: 10s
      retries: 5
      start_period: 120s
    restart: "no"
"""


def test_the_users_own_compose_file_keeps_everything_but_the_pin_and_patched_files(
    nights: Nights, tmp_path: Path, compose: Compose
) -> None:
    from ruamel.yaml import YAML

    from patchkeeper.overlay.service import UserCompose, composed

    args = ["sync", "--recipe", str(nights.recipe), "--out", str(nights.out)]
    assert runner.invoke(app, [*args, "--image", nights.night1]).exit_code == 0
    overlay = (nights.links / "latest").resolve()
    protocol = f"{SOURCE_ROOT}/python/sglang/srt/entrypoints/anthropic/protocol.py"
    home = tmp_path / "user"
    home.mkdir()
    file = home / "compose.yaml"
    file.write_text(
        USER_COMPOSE.format(
            image=nights.night1, container=nights.container, models=tmp_path, protocol=protocol
        )
    )
    target = composed(overlay, UserCompose(file, "sglang-qwen36"), None, tmp_path)
    assert target.project == "user"
    with compose.project(target.project, target.files) as argv:
        done = subprocess.run([*argv, "config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    spec = YAML(typ="safe").load(done.stdout)["services"]["sglang-qwen36"]
    lock = read_lock(overlay)
    assert spec["image"] == lock.image.pinned
    assert spec["runtime"] == "nvidia" and spec["ipc"] == "host" and spec["restart"] == "no"
    assert spec["ulimits"]["stack"] == 67108864
    assert spec["ulimits"]["memlock"] in (-1, {"soft": -1, "hard": -1})
    assert spec["command"] == [
        *[
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "/models/Qwen3.6-27B-FP8",
            "--tp-size",
            "1",
        ],
        *["--mem-fraction-static", "0.78", "--context-length", "256000"],
        "--chat-template",
        "/patchkeeper/chat_template.jinja",
    ]
    assert spec["healthcheck"]["test"] == ["CMD", "curl", "-f", "http://localhost:8072/health"]
    assert "network_mode" not in spec  # no silent host networking for the user's file
    mounts = {(v["target"] if isinstance(v, dict) else v.split(":")[1]): v for v in spec["volumes"]}

    def source(volume: Any) -> str:
        return str(volume["source"] if isinstance(volume, dict) else volume.split(":")[0])

    assert source(mounts[protocol]) == str(overlay / "rootfs" / protocol.lstrip("/"))
    assert source(mounts["/models"]) == str(tmp_path)
    assert source(mounts["/models/chat_template_no_thinking.jinja"]) == str(
        home / "chat_template_no_thinking.jinja"
    )
    assert source(mounts["/patchkeeper/chat_template.jinja"]) == str(
        overlay / "chat_template.jinja"
    )
    assert len(mounts) == 3 + len(lock.files) + 1 - 1  # theirs, ours, the replaced one


def test_up_boots_the_users_own_service_patched(
    nights: Nights, docker_client: Any, tmp_path: Path, compose: Compose
) -> None:
    home = tmp_path / "user"
    home.mkdir()
    file = home / "compose.yaml"
    port = nights.port
    file.write_text(
        f"services:\n  theirs:\n    image: {nights.night1}\n"
        f"    container_name: {nights.container}\n    network_mode: host\n"
        f"    labels: {{owner: them}}\n    ulimits: {{nofile: 4096}}\n"
        f"    volumes: ['{nights.fields['www']}:/www:ro']\n"
        f"    init: true\n"
        f'    command: /bin/sh -c "exec /bin/busybox httpd -f -p {port} -h /www" sh\n'
        f"    healthcheck: {{test: [CMD, /bin/wget, -q, -O, /dev/null, "
        f"'http://127.0.0.1:{port}/health'], interval: 1s, retries: 2}}\n"
    )
    project = f"pk-user-{uuid.uuid4().hex[:8]}"
    args = ["--compose", str(file), "--service", "theirs", "--project", project]
    done = up(nights, "--image", nights.night1, *args)
    try:
        assert done.exit_code == 0, done.output
        container = docker_client.containers.get(nights.container)
        assert container.labels["owner"] == "them"
        assert container.labels["com.docker.compose.project"] == project
        assert container.attrs["HostConfig"]["Ulimits"] == [
            {"Name": "nofile", "Soft": 4096, "Hard": 4096}
        ]
        assert container.attrs["Args"][-2:] == [
            "--chat-template",
            "/patchkeeper/chat_template.jinja",
        ]
        _, files = served(docker_client, nights)
        assert files == patched((nights.links / "current").resolve())
        assert (nights.links / "theirs.override.yaml").is_file()
    finally:
        down = ["down", "--recipe", str(nights.recipe), "--out", str(nights.out), *args]
        assert runner.invoke(app, down).exit_code == 0


def test_gc_removes_only_what_no_link_recent_sync_or_container_refers_to(
    nights: Nights, docker_client: Any
) -> None:
    assert up(nights, "--image", nights.night1).exit_code == 0
    running = (nights.links / "current").resolve()
    sync = ["sync", "--recipe", str(nights.recipe), "--out", str(nights.out), "--image"]
    assert runner.invoke(app, [*sync, nights.night2]).exit_code == 0
    superseded = (nights.links / "latest").resolve()
    nights.write_recipe(SERVE + " -v")
    assert runner.invoke(app, [*sync, nights.night2]).exit_code == 0
    newest = (nights.links / "latest").resolve()
    gc = ["gc", "--out", str(nights.out), "--keep", "1"]

    dry = runner.invoke(app, gc)
    assert dry.exit_code == 0, dry.output
    assert f"would remove {superseded.name}" in dry.output
    assert f"keep    {newest.name}: one of the last 1 syncs" in dry.output
    assert superseded.is_dir()  # a dry run removes nothing

    (nights.links / "current").unlink()
    docker_client.containers.get(nights.container).stop(timeout=2)
    deleted = runner.invoke(app, [*gc, "--delete"])
    assert deleted.exit_code == 0, deleted.output
    assert f"removed {superseded.name}" in deleted.output and not superseded.exists()
    assert f"container {nights.container} (exited)" in deleted.output
    assert running.is_dir() and newest.is_dir()

    (nights.links / nights.night1.rsplit(":", 1)[1]).unlink()
    recent = runner.invoke(app, ["gc", "--out", str(nights.out), "--keep", "3"])
    assert f"keep    {running.name}: container {nights.container} (exited), one of" in recent.output
    docker_client.containers.get(nights.container).remove()
    freed = runner.invoke(app, [*gc, "--delete"])
    assert f"removed {running.name}" in freed.output and not running.exists()
    assert list((nights.out / ".store").iterdir()) == [newest]


def test_init_from_compose_turns_hand_patched_mounts_into_a_recipe_that_syncs(
    nights: Nights, demo: Demo, tmp_path: Path
) -> None:
    from patchkeeper.demo.scenario import adapter_files

    home = tmp_path / "user"
    home.mkdir()
    vanilla = adapter_files()[PROTOCOL].decode()
    fixed = vanilla.replace(
        '    role: Literal["user", "assistant"]\n',
        '    role: Literal["user", "assistant", "system"]\n',
    )
    assert fixed != vanilla
    (home / "sglang-patched-protocol.py").write_text(fixed)
    nightly_serving = demo.recipe.parent / "source" / SERVING
    (home / "serving.py").write_bytes(nightly_serving.read_bytes())  # mounted, unchanged
    (home / "chat_template_no_thinking.jinja").write_text("{{ messages }}")
    file = home / "compose.yaml"
    file.write_text(
        USER_COMPOSE.format(
            image=nights.night1,
            container=nights.container,
            models=tmp_path,
            protocol=f"{SOURCE_ROOT}/{PROTOCOL}",
        ).replace(
            "      - ./chat_template",
            f"      - ./serving.py:{SOURCE_ROOT}/{SERVING}:ro\n      - ./chat_template",
        )
    )
    args = ["init", "--from-compose", str(file), "--service", "sglang-qwen36"]
    args += ["--git", demo.upstream.url, "--dir", str(home / "pk"), "--name", "qwen36"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"{SOURCE_ROOT}/{PROTOCOL}: {home}/sglang-patched-protocol.py differs" in done.output
    assert "(+1 -1)" in done.output
    assert '+    role: Literal["user", "assistant", "system"]' in done.output
    assert f"{SOURCE_ROOT}/{SERVING}: the image's own bytes; not a patch" in done.output
    recipe = home / "pk" / "qwen36.yaml"
    assert "compose_file: ../compose.yaml" in recipe.read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "refusing to overwrite" in again.output

    out = tmp_path / "overlays"
    local = ["--image-source", "engine"]  # the image is in the engine only
    synced = runner.invoke(
        app, ["sync", "--recipe", str(recipe), "--out", str(out), "--json", *local]
    )
    assert synced.exit_code == 0, synced.output
    overlay = (out / "qwen36" / "latest").resolve()
    served_protocol = overlay / "rootfs" / f"{SOURCE_ROOT}/{PROTOCOL}".lstrip("/")
    assert served_protocol.read_text() == fixed
    assert [f.path for f in read_lock(overlay).files] == [f"{SOURCE_ROOT}/{PROTOCOL}"]


def test_the_users_hand_patches_never_outlive_their_night(
    nights: Nights, demo: Demo, docker_client: Any, tmp_path: Path, compose: Compose
) -> None:
    """Adopted paths: one the overlay patches (its file must replace theirs), one it does
    not (the nightly has the fix: their mount must go, the image's own file serve)."""
    home = tmp_path / "user"
    home.mkdir()
    serving, protocol = (f"{SOURCE_ROOT}/{SERVING}", f"{SOURCE_ROOT}/{PROTOCOL}")
    version = f"{SOURCE_ROOT}/python/sglang/version.py"
    adopted = [serving, protocol, version]
    for path in adopted:
        (home / PurePosixPath(path).name).write_text(f"# yesterday's hand patch of {path}\n")
    port = nights.port
    file = home / "compose.yaml"
    file.write_text(
        f"name: pk-adopt-{uuid.uuid4().hex[:8]}\n"
        f"services:\n  web:\n    image: {nights.night1}\n"
        f"    container_name: {nights.container}\n    network_mode: host\n"
        "    volumes:\n"
        f"      - '{nights.fields['www']}:/www:ro'\n"
        + "".join(f"      - ./{PurePosixPath(p).name}:{p}:ro\n" for p in adopted)
        + "    init: true\n"
        + f'    command: /bin/sh -c "exec /bin/busybox httpd -f -p {port} -h /www" sh\n'
        f"    healthcheck: {{test: [CMD, /bin/wget, -q, -O, /dev/null, "
        f"'http://127.0.0.1:{port}/health'], interval: 1s, retries: 2}}\n"
    )
    recipe = nights.recipe.read_text() + f"  compose_file: {file}\n  adopted: {adopted}\n"
    nights.recipe.write_text(recipe)
    done = up(nights, "--image", nights.night1)
    assert done.exit_code == 0, done.output
    current = (nights.links / "current").resolve()
    lock = read_lock(current)
    ours = {f.path for f in lock.files}
    assert version not in ours and ours & {serving, protocol}  # both kinds of night
    container = docker_client.containers.get(nights.container)
    assert container.image.id == docker_client.images.get(nights.night1).id
    mounts = {m["Destination"]: m["Source"] for m in container.attrs["Mounts"]}
    for path in adopted:
        if path in ours:
            assert mounts[path] == str(current / "rootfs" / path.lstrip("/"))
        else:
            assert path not in mounts, f"{path}: still {mounts.get(path)}"
        code, output = container.exec_run(["/bin/cat", path])
        assert code == 0, output
        if path in ours:
            assert hashlib.sha256(output).hexdigest() == patched(current)[path]
        else:
            vanilla = demo.recipe.parent / "source" / path.removeprefix(f"{SOURCE_ROOT}/")
            assert output == vanilla.read_bytes()
