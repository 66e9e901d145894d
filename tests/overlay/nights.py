"""Two nights of the demo's checkout for `up` tests: a recipe serving busybox httpd with
the demo's real overlay mounted over the image's sources, and `up` run on it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from patchkeeper.cli import app
from patchkeeper.demo.image import build_image
from patchkeeper.demo.scenario import SERVING, SOURCE_ROOT
from patchkeeper.demo.setup import Demo
from patchkeeper.image.identity import REVISION_LABEL

runner = CliRunner()

RECIPE = """\
image: {repository}
tags: '{tags}'
patchsets: [{patchset}]
service:
  name: web
  container_name: {container}
  port: {port}
  model: {{path: /models/tiny, host_path: {model}}}
  command: [/bin/sh, -c, "{serve}", sh]
  volumes: ['{www}:/www:ro']
  init: true  # PID 1 forwards SIGTERM: a stop takes no 10 s grace period
  chat_template: {{from: model, set: {{enable_thinking: false}}}}
  healthcheck:
    test: [CMD, /bin/wget, -q, -O, /dev/null, 'http://127.0.0.1:{port}/health']
    interval: 1s
    retries: 2
    start_period: 0s
  gpus: null
"""
SERVE = "exec /bin/busybox httpd -f -p {port} -h /www"
NEVER_HEALTHY = "exec /bin/sleep 3600"


@dataclass(frozen=True)
class Nights:
    recipe: Path
    fields: dict[str, Any]
    out: Path
    night1: str
    night2: str
    container: str
    port: int

    @property
    def links(self) -> Path:
        """`<out>/<recipe>/`: the recipe (and compose project) is named per run."""
        return self.out / self.recipe.stem

    def write_recipe(self, serve: str = SERVE) -> None:
        self.recipe.write_text(RECIPE.format(**self.fields, serve=serve.format(port=self.port)))


def next_night(tag: str) -> str:
    """nightly-dev-cu13-<date>-<sha8> one day later (same checkout, as a rebuild is)."""
    *head, date, sha = tag.split("-")
    return "-".join([*head, str(int(date) + 1), sha])


def night_image(demo: Demo, client: Any, tmp: Path, reference: str, changed: bool) -> str:
    """A nightly of the demo's checkout (built here: the shared demo image may go at any
    time); `changed`: the next night, its patched serving file moved on by a line."""
    tree = tmp / reference.rsplit(":", 1)[1]
    shutil.copytree(demo.recipe.parent / "source", tree, symlinks=True)
    if changed:
        serving = tree / SERVING
        serving.write_text(serving.read_text() + "# changed upstream in night 2\n")
    labels = {REVISION_LABEL: demo.upstream.nightly_commit}
    build_image(client, reference, {str(SOURCE_ROOT): tree}, labels=labels)
    return reference


def up(nights: Nights, *extra: str) -> Result:
    args = ["up", "--recipe", str(nights.recipe), "--out", str(nights.out), "--no-smoke"]
    return runner.invoke(app, [*args, "--deadline", "60", *extra])
