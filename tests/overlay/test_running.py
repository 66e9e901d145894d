"""What the engine runs for a service, read from its container (engine-free: the SDK's
own models over the engine's inspect shape, tests/overlay/containers.py)."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest

from patchkeeper.errors import UnreachableError
from patchkeeper.overlay.compose import overlay_mounts
from patchkeeper.overlay.lock import LOCK_NAME, read_lock
from patchkeeper.overlay.running import Running, find, mismatches, overlay_lock
from tests.overlay.containers import (
    EXITED,
    IMAGE,
    Engine,
    bind,
    client,
    inspect,
    volume,
)
from tests.overlay.locks import overlay

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
FILES = "com.docker.compose.project.config_files"
DIRECTORY = "com.docker.compose.project.working_dir"


def composed(project: str, service: str, **more: str) -> dict[str, str]:
    return {PROJECT: project, SERVICE: service, "org.opencontainers.image.revision": "e887"} | more


def running(mounts: dict[str, str], image_id: str = IMAGE, files: tuple[Path, ...] = ()) -> Running:
    return Running(None, "web", "running", "demo", files, None, image_id, mounts)


def test_the_container_is_read_from_its_labels_bind_mounts_and_state() -> None:
    labels = composed(
        "demo", "sglang", **{FILES: "/x/compose.yaml,/x/compose.override.yaml", DIRECTORY: "/x"}
    )
    mounts = [bind("/s/rootfs/src/a.py", "/src/a.py"), volume("cache", "/root/.cache")]
    engine = Engine([inspect("web", labels, EXITED, mounts)])
    found = find(client(engine), "demo", "sglang", None)
    assert found is not None
    assert found.container.name == "web"
    assert (found.name, found.status, found.project) == ("web", "exited", "demo")
    assert found.files == (Path("/x/compose.yaml"), Path("/x/compose.override.yaml"))
    assert found.directory == Path("/x")
    assert found.image_id == IMAGE
    assert found.mounts == {"/src/a.py": "/s/rootfs/src/a.py"}  # bind mounts only


def test_a_container_compose_did_not_make_is_found_by_its_name() -> None:
    engine = Engine(
        [inspect("other", composed("demo", "other"))],
        [inspect("web", None, mounts=[volume("cache", "/c")])],
    )
    found = find(client(engine), "demo", "sglang", "web")
    assert found is not None
    assert (found.name, found.status, found.project) == ("web", "running", None)
    assert (found.files, found.directory, found.mounts) == ((), None, {})
    assert find(client(engine), "demo", "sglang", None) is None
    assert find(client(engine), "demo", "sglang", "gone") is None


def test_an_empty_working_dir_label_and_a_sparse_document_read_as_unknown() -> None:
    document = inspect("web", composed("demo", "sglang", **{DIRECTORY: "", FILES: ""}))
    del document["State"], document["Image"], document["Mounts"]
    found = find(client(Engine([document])), "demo", "sglang", None)
    assert found is not None
    assert (found.status, found.image_id, found.directory, found.files) == ("unknown", "", None, ())
    assert found.mounts == {}


def test_only_the_services_own_container_in_its_project_is_taken() -> None:
    engine = Engine(
        [inspect("decoy-service", composed("demo", "router"))],
        [inspect("decoy-project", composed("other", "sglang"))],
        [inspect("named", None)],
        [inspect("web", composed("demo", "sglang"), EXITED)],  # stopped: found all the same
    )
    found = find(client(engine), "demo", "sglang", "named")
    assert found is not None and found.name == "web"  # labels win over the name


@pytest.mark.parametrize("name", [None, "web"])
def test_a_daemon_error_is_unreachable_exit_3(name: str | None) -> None:
    engine = Engine([inspect("web", None)])
    engine.failure = docker.errors.APIError("500 Server Error: dockerd is shutting down")
    with pytest.raises(UnreachableError) as refused:
        find(client(engine), "demo", "sglang", name)
    assert str(refused.value) == (
        "Docker daemon error listing containers: 500 Server Error: dockerd is shutting down"
    )
    assert refused.value.exit_code == 3


def test_a_daemon_error_on_the_name_lookup_is_unreachable_too() -> None:
    engine = Engine([inspect("web", None)])
    engine.containers = lambda **_: []  # type: ignore[method-assign]
    engine.failure = docker.errors.APIError("boom")
    with pytest.raises(UnreachableError) as refused:
        find(client(engine), "demo", "sglang", "web")
    assert str(refused.value) == "Docker daemon error listing containers: boom"


def test_the_store_overlay_is_found_from_its_files_or_its_v1_directory(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    latest = tmp_path / "out" / "demo" / "latest"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    v2 = running({}, files=(latest / "compose.yaml", latest / "compose.override.yaml"))
    assert v2.store_overlay() == store_dir.resolve()
    deeper = running({}, files=(store_dir / "rootfs" / "src" / "x.yaml",))
    assert deeper.store_overlay() == store_dir.resolve()
    copies = Path("/tmp/patchkeeper-compose-v1-gone")  # v1: copies, then the project's dir
    v1 = Running(None, "web", "running", "demo", (copies / "0-compose.yaml",), latest, "", {})
    assert v1.store_overlay() == store_dir.resolve()
    assert running({}, files=(elsewhere / "compose.yaml",)).store_overlay() is None
    assert running({}).store_overlay() is None


def test_the_first_named_place_with_a_lock_wins(tmp_path: Path) -> None:
    first, second = overlay(tmp_path / "a"), overlay(tmp_path / "b")
    both = Running(None, "w", "running", "d", (first / "compose.yaml",), second, "", {})
    assert both.store_overlay() == first.resolve()
    (first / "compose.yaml").unlink()  # the file's directory still holds the lock
    assert both.store_overlay() == first.resolve()


def test_made_from_a_file_named_in_its_labels_or_v1_its_project_directory(
    tmp_path: Path,
) -> None:
    store_dir = overlay(tmp_path / "out")
    link = tmp_path / "out" / "demo" / "latest" / "compose.yaml"
    v2 = running({}, files=(store_dir / "compose.yaml",))
    assert v2.made_from(link)  # the same file, reached through the link
    assert not v2.made_from(store_dir / "compose.override.yaml")
    copies = tmp_path / "copies"
    v1 = Running(None, "w", "running", "d", (copies / "0-compose.yaml",), store_dir, "", {})
    assert v1.made_from(link)
    assert not v1.made_from(tmp_path / "compose.yaml")
    assert not running({}).made_from(link)


def test_a_container_running_the_overlay_has_no_mismatch(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    lock = read_lock(store_dir)
    mounts = overlay_mounts(lock, store_dir)
    assert [m.target for m in mounts] == [
        "/src/a.py",
        "/src/b.py",
        "/patchkeeper/chat_template.jinja",
    ]
    latest = tmp_path / "out" / "demo" / "latest"  # the same files through the link
    seen = {m.target: str(latest / m.source.relative_to(store_dir)) for m in mounts}
    assert mismatches(running(seen), store_dir, lock, IMAGE) == []
    assert mismatches(running(seen, image_id="sha256:" + "9" * 64), store_dir, lock, None) == []


def test_each_difference_from_the_overlay_is_one_sentence(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    lock = read_lock(store_dir)
    seen = {m.target: str(m.source) for m in overlay_mounts(lock, store_dir)}
    del seen["/src/a.py"]
    seen["/src/b.py"] = "/home/me/hand-patch/b.py"
    other = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    assert mismatches(running(seen, image_id=other), store_dir, lock, IMAGE) == [
        "the running container web runs image sha256:0123456789ab, not this overlay's "
        "example/sglang:nightly (sha256:6e90481f2897)",
        "the running container web mounts nothing at /src/a.py: "
        "someone ran compose without the override",
        "the running container web mounts /home/me/hand-patch/b.py at /src/b.py, "
        "not this overlay: someone ran compose without the override",
    ]


def test_the_lock_of_a_store_directory_or_none_when_unreadable(tmp_path: Path) -> None:
    store_dir = overlay(tmp_path / "out")
    assert overlay_lock(store_dir) == read_lock(store_dir)
    assert overlay_lock(tmp_path / "nothing-here") is None
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / LOCK_NAME).write_text("{not a lock")
    assert overlay_lock(foreign) is None
