"""The drift guard's rule, on real OCI layouts: an overlaid file's bytes in the image
must be the lock's vanilla, else the image is refused with every such file named."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from patchkeeper.errors import DriftError, ImageError, UnreachableError
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.layout import LayoutSource
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.overlay.compose_cli import Compose
from patchkeeper.overlay.drift import (
    Drift,
    drifted,
    edited,
    guard_local,
    guard_service,
    miscomposed,
    refuse_drift,
)
from patchkeeper.overlay.lock import LOCK_NAME, Lock, read_lock
from patchkeeper.overlay.service import Composed, composed
from patchkeeper.overlay.write import OVERRIDE_COMPOSE, write_overlay
from tests.names import unique
from tests.oci import Entry, Image, layer, tree, write_oci_layout
from tests.overlay.locks import FILES, PINNED, make_lock, overlay_content, sha

A = "/src/a.py"
B = "/src/b.py"
C = "/src/c.py"
SHA_A, SHA_B, SHA_C = sha(b"a\n"), sha(b"b\n"), sha(b"c\n")
SHA_A2 = sha(b"a changed\n")


def image_of(tmp_path: Path, *layers: list[Entry]) -> tuple[LayoutSource, ResolvedImage]:
    image = Image([layer(entries) for entries in layers])
    layout = write_oci_layout(tmp_path / "layout", image, "nightly")
    source = LayoutSource(layout)
    return source, source.resolve(ImageRef.parse("example/sglang:nightly"))


def vanilla_lock(vanilla: dict[str, bytes | None]) -> Lock:
    """A lock overlaying each path, made from these vanilla bytes (None: no such file)."""
    files = [
        {
            "path": path,
            "vanilla_sha256": None if data is None else sha(data),
            "patched_sha256": sha(b"patched " + path.encode()),
            "mode": 0o644,
        }
        for path, data in vanilla.items()
    ]
    return Lock.model_validate({**make_lock("f" * 64).model_dump(), "files": files})


def test_the_image_the_lock_was_made_from_passes(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a\n", B: "b\n"}))
    lock = vanilla_lock({A: b"a\n", B: b"b\n", "/src/new.py": None})
    assert drifted(source, image, lock) == []
    refuse_drift(source, image, lock)  # does not raise


def test_changed_and_missing_files_are_each_named_in_lock_order(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a changed\n", "/src/c.py": "c\n"}))
    lock = vanilla_lock({B: b"b\n", "/src/c.py": b"c\n", A: b"a\n"})
    assert drifted(source, image, lock) == [
        Drift(B, sha(b"b\n"), None),
        Drift(A, sha(b"a\n"), sha(b"a changed\n")),
    ]


def test_a_file_the_lock_says_is_absent_is_drift_when_the_image_has_it(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a\n"}))
    assert drifted(source, image, vanilla_lock({A: None})) == [Drift(A, None, sha(b"a\n"))]


def test_a_symlink_in_the_image_is_drift_even_to_the_locked_bytes(tmp_path: Path) -> None:
    """An overlay's single-file mount over a link would replace the link, not its target."""
    link = [Entry.dir("src"), Entry.symlink("src/a.py", "real.py")]
    source, image = image_of(tmp_path, tree({"/src/real.py": "a\n"}), link)
    found = drifted(source, image, vanilla_lock({A: b"a\n"}))
    assert found == [Drift(A, sha(b"a\n"), "a link to /src/real.py")]
    assert str(found[0]) == (
        f"{A}: image has a link to /src/real.py, lock's vanilla is sha256 {SHA_A[:12]}…"
    )


def test_a_drift_shows_short_digests_and_absence() -> None:
    one, two = sha(b"1"), sha(b"2")
    assert str(Drift(A, one, two)) == (
        f"{A}: image has sha256 {two[:12]}…, lock's vanilla is sha256 {one[:12]}…"
    )
    assert (
        str(Drift(A, None, two)) == f"{A}: image has sha256 {two[:12]}…, lock's vanilla is absent"
    )
    assert (
        str(Drift(A, one, None)) == f"{A}: image has absent, lock's vanilla is sha256 {one[:12]}…"
    )


def test_a_lock_without_files_never_reads_the_image(tmp_path: Path) -> None:
    source, _ = image_of(tmp_path, tree({A: "a\n"}))
    gone = ResolvedImage(ImageRef.parse("example/sglang:gone"), "sha256:" + "9" * 64, None)
    with pytest.raises(ImageError, match="no image"):
        source.read(gone, [PurePosixPath(A)])
    assert drifted(source, gone, make_lock("f" * 64)) == []
    refuse_drift(source, gone, make_lock("f" * 64))


def test_the_refusal_names_the_image_each_file_and_the_way_out(tmp_path: Path) -> None:
    source, image = image_of(tmp_path, tree({A: "a changed\n", B: "b\n"}))
    lock = vanilla_lock({A: b"a\n", B: b"b\n", C: b"c\n"})
    with pytest.raises(DriftError) as refused:
        refuse_drift(source, image, lock)
    assert refused.value.exit_code == 2
    assert str(refused.value) == (
        f"image example/sglang:nightly ({image.image_id[:19]}) is not the image this overlay "
        "was made from; refusing to start it with these files:\n"
        f"  {A}: image has sha256 {SHA_A2[:12]}…, lock's vanilla is sha256 {SHA_A[:12]}…\n"
        f"  {C}: image has absent, lock's vanilla is sha256 {SHA_C[:12]}…\n"
        "re-run `patchkeeper sync` against this image"
    )


def test_without_an_engine_only_a_pull_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that does not run the image has nothing to guard; one told to pull does."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    lock = vanilla_lock({A: b"a\n"})
    assert guard_local(lock, pull=False) is None
    with pytest.raises(UnreachableError):
        guard_local(lock, pull=True)


def synced(tmp_path: Path) -> Path:
    """A store directory as sync writes it, its override pinning the lock's image."""
    lock = make_lock("", FILES)
    overlay, _, _ = write_overlay(
        tmp_path / "overlays",
        "demo",
        "nightly",
        lock,
        overlay_content("example/sglang:nightly", pin=True),
    )
    return overlay


def own(overlay: Path) -> Composed:
    with tempfile.TemporaryDirectory() as scratch:
        return composed(overlay, None, None, Path(scratch))


def tamper(path: Path, edit: Callable[[str], str]) -> None:
    path.chmod(0o644)
    path.write_text(edit(path.read_text()))


def refusal(compose: Compose, overlay: Path) -> str:
    with pytest.raises(DriftError) as refused:
        target = own(overlay)
        guard_service(target, compose.config(target.files))
    assert str(refused.value).startswith(f"{overlay}: changed since sync wrote it; refusing")
    assert str(refused.value).endswith(
        "re-run `patchkeeper sync` (it writes a new overlay; a store directory is never rewritten)"
    )
    return str(refused.value)


def test_an_untouched_overlay_passes_under_either_compose(compose: Compose, tmp_path: Path) -> None:
    overlay = synced(tmp_path)
    assert edited(overlay, read_lock(overlay)) == []
    target = own(overlay)
    guard_service(target, compose.config(target.files))  # does not raise


def test_a_rootfs_file_edited_after_sync_is_refused_naming_it(
    compose: Compose, tmp_path: Path
) -> None:
    overlay = synced(tmp_path)
    tamper(overlay / "rootfs/src/a.py", lambda text: text + "# by hand\n")
    found = sha(b"a\n# by hand\n")[:12]
    assert f"rootfs/src/a.py: sha256 {found}…, the lock's is sha256 {SHA_A[:12]}…" in refusal(
        compose, overlay
    )


def test_a_failed_nights_log_beside_the_overlay_is_not_an_edit(tmp_path: Path) -> None:
    """`up` keeps a failed night's logs at the top of its store directory; the same
    overlay is brought up again on a later night (a re-sync reuses the directory)."""
    overlay = synced(tmp_path)
    (overlay / "up-failed-20261207T000000Z.log").write_text("unhealthy\n")
    assert edited(overlay, read_lock(overlay)) == []
    (overlay / "rootfs/src/up-failed-x.log").write_text("not a log of ours\n")
    assert edited(overlay, read_lock(overlay)) == [
        "rootfs/src/up-failed-x.log: not in the lock's files"
    ]


def test_a_lock_whose_file_list_was_emptied_is_refused(compose: Compose, tmp_path: Path) -> None:
    overlay = synced(tmp_path)
    tamper(overlay / LOCK_NAME, lambda text: json.dumps({**json.loads(text), "files": []}))
    message = refusal(compose, overlay)
    assert "rootfs/src/a.py: not in the lock's files" in message
    assert "rootfs/src/b.py: not in the lock's files" in message


def test_an_edited_digest_in_the_override_is_refused(compose: Compose, tmp_path: Path) -> None:
    overlay = synced(tmp_path)
    other = "example/sglang@sha256:" + "9" * 64
    tamper(overlay / OVERRIDE_COMPOSE, lambda text: text.replace(PINNED, other))
    assert (
        "its compose files, chat template or patchkeeper.lock.json (fingerprint differs)"
        in refusal(compose, overlay)
    )


def test_compose_running_another_image_or_mount_is_named() -> None:
    lock = make_lock("f" * 64, FILES)
    overlay = Path("/o/.store/nightly-1")
    v2 = {
        "image": PINNED,
        "volumes": [{"type": "bind", "source": f"{overlay}/rootfs/src/a.py", "target": A}],
    }
    assert miscomposed({"services": {"sglang": v2}}, "sglang", lock, overlay) == [
        f"{B}: compose mounts nothing, not {overlay}/rootfs/src/b.py"
    ]
    v1 = {
        "image": "example/sglang:nightly",
        "volumes": [f"{overlay}/rootfs/src/b.py:{B}:ro", f"/home/me/a.py:{A}:ro"],
    }
    assert miscomposed({"services": {"sglang": v1}}, "sglang", lock, overlay) == [
        f"image: compose runs example/sglang:nightly, the lock's is {PINNED}",
        f"{A}: compose mounts /home/me/a.py, not {overlay}/rootfs/src/a.py",
    ]
    assert miscomposed({"services": {}}, "sglang", lock, overlay) == [
        "compose has no service 'sglang'"
    ]


def test_up_refuses_an_overlay_whose_override_was_edited_and_starts_nothing(
    docker_client: Any, compose: Compose, tmp_path: Path
) -> None:
    overlay = synced(tmp_path)
    tamper(
        overlay / OVERRIDE_COMPOSE,
        lambda text: text.replace(PINNED, "example/sglang@sha256:" + "9" * 64),
    )
    project = unique("pk-test-drift")
    done = CliRunner().invoke(
        app, ["up", "--overlay", str(overlay), "--project", project, "--no-smoke"]
    )
    assert done.exit_code == 2, done.output
    assert f"{overlay}: changed since sync wrote it" in done.output
    assert (
        docker_client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
        == []
    )


READ_AND_HANG = """
import sys, time
from pathlib import PurePosixPath
from patchkeeper.image.engine import EngineSource
from patchkeeper.image.model import ImageRef
source = EngineSource()
image = source.resolve(ImageRef.parse(sys.argv[1]))
with source._stopped_container(image) as container:
    print(container.id, flush=True)
    time.sleep(600)
"""


def test_a_guard_killed_mid_read_leaks_its_scratch_container_only_until_the_next_read(
    docker_client: Any, demo: Demo
) -> None:
    killed = subprocess.Popen(
        [sys.executable, "-c", READ_AND_HANG, demo.image], stdout=subprocess.PIPE, text=True
    )
    assert killed.stdout is not None
    leaked = killed.stdout.readline().strip()
    killed.kill()  # SIGKILL: no `finally` runs
    killed.wait()
    assert docker_client.containers.get(leaked).status == "created"
    source = EngineSource(docker_client)
    image = source.resolve(ImageRef.parse(demo.image))
    lock = vanilla_lock({"/nonexistent/a.py": None})
    assert drifted(source, image, lock) == []  # the next guard, the same image
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(leaked)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_byte_changed_in_any_file_but_the_lock_is_refused(data: st.DataObject) -> None:
    """The lock's descriptions (titles, warnings) are outside the fingerprint by design;
    every byte of what is mounted or run is inside it."""
    with tempfile.TemporaryDirectory() as scratch:
        overlay = synced(Path(scratch))
        files = sorted(p for p in overlay.rglob("*") if p.is_file() and p.name != LOCK_NAME)
        path = data.draw(st.sampled_from(files), label="file")
        text = path.read_bytes()
        at = data.draw(st.integers(0, len(text) - 1), label="at")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != text[at]), label="byte")
        path.chmod(0o644)
        path.write_bytes(text[:at] + bytes([byte]) + text[at + 1 :])
        assert edited(overlay, read_lock(overlay)), f"{path.name}[{at}] = {byte} went unseen"
