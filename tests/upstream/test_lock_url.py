"""The lock is committed and published: the upstream URL it records carries no credentials."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.setup import Demo
from tests.git_http import GitHttpServer


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
