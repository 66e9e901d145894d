"""`sync` through the CLI against an untrusted cache and an authenticated upstream: the lock
(committed, published) records no credentials, a damaged mirror heals, and a cache directory
that is a file is bad input naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from tests.git_http import GitHttpServer


def _sync(recipe: Path, out: Path, *extra: str) -> Result:
    args = ["sync", "--recipe", str(recipe), "--out", str(out), "--image-source", "engine"]
    return CliRunner().invoke(app, [*args, *extra])


def _copy(demo: Demo, tmp_path: Path) -> Path:
    for name in ("demo.yaml", "sglang-demo.yaml"):
        shutil.copy(demo.recipe.parent / name, tmp_path / name)
    return tmp_path / "demo.yaml"


def test_a_damaged_mirror_heals_on_the_next_sync_and_says_so(
    demo: Demo, tmp_path: Path, private_cache: Path
) -> None:
    recipe = _copy(demo, tmp_path)
    first = _sync(recipe, tmp_path / "out", "--json")
    assert first.exit_code == 0, first.output
    (mirror,) = (private_cache / "mirrors").glob("*.git")
    shutil.rmtree(mirror / "objects")  # a cache the Action restored half, say
    again = _sync(recipe, tmp_path / "out", "--json")
    assert again.exit_code == 0, again.output
    assert "was damaged (no objects)" in " ".join(again.stderr.split())
    assert json.loads(again.stdout)["patches"] == json.loads(first.stdout)["patches"]
    assert len(list(mirror.parent.glob(f"{mirror.name}.damaged-*"))) == 1


def test_a_cache_directory_that_is_a_file_is_exit_2_naming_it(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _copy(demo, tmp_path)
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("PATCHKEEPER_CACHE_DIR", str(tmp_path / "cache"))
    done = _sync(recipe, tmp_path / "out")
    assert done.exit_code == 2, done.output
    assert f"{tmp_path / 'cache'}: not a directory" in " ".join(done.stderr.split())
    assert (tmp_path / "cache").read_text() == "" and not (tmp_path / "out").exists()


def test_sync_over_an_authenticated_url_locks_it_without_userinfo(
    demo: Demo, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    demo.upstream.history.publish(served / "up.git")
    for name in ("demo.yaml", "sglang-demo.yaml"):
        shutil.copy(demo.recipe.parent / name, tmp_path / name)
    patchset = tmp_path / "sglang-demo.yaml"
    password = "pw-Xq7rT9kLm2"
    with GitHttpServer(served, "bot", password) as server:
        secret_url = server.url("up.git", f"bot:{password}")
        patchset.write_text(patchset.read_text().replace(demo.upstream.url, secret_url))
        assert secret_url in patchset.read_text()
        done = CliRunner().invoke(
            app,
            [
                "sync",
                "--recipe",
                str(tmp_path / "demo.yaml"),
                "--out",
                str(tmp_path / "out"),
                "--image-source",
                "engine",
                "--json",
            ],
        )
        assert done.exit_code == 0, done.output
        assert any(ok for path, ok in server.requests if "git-upload-pack" in path)
    (lock,) = (tmp_path / "out").rglob("patchkeeper.lock.json")
    [locked] = json.loads(lock.read_text())["patchsets"]
    assert locked["upstream"] == server.url("up.git")  # no user, no password, no `***@`
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.is_symlink()]
    assert written and not any(password.encode() in p.read_bytes() for p in written)
    assert password not in done.output and "bot:" not in lock.read_text()
