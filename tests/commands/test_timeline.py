"""`status --tags`: which nightly first contains each patch, on a real git history."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.demo.history import Edit, History


def test_first_nightly_per_patch(tmp_path: Path) -> None:
    history = History(tmp_path / "work", {"a.txt": b"a\n", "b.txt": b"b\n", "c.txt": b"c\n"})
    nightlies = [f"nightly-dev-cu13-20260601-{history.head()[:8]}"]
    history.squash_pr(1, "Fix one", [Edit("a.txt", "a\n", "A\n")])
    for i in range(3):  # unrelated work between nightlies
        history.commit(f"chore {i}", [Edit("c.txt", "c\n" if i == 0 else f"c{i - 1}\n", f"c{i}\n")])
    nightlies.append(f"nightly-dev-cu13-20260602-{history.head()[:8]}")
    history.merge_pr(2, "Fix two", [Edit("b.txt", "b\n", "B\n")])
    nightlies.append(f"nightly-dev-cu13-20260603-{history.head()[:8]}")
    history.open_pr(3, "Fix three", [Edit("c.txt", "c2\n", "C\n")])
    url = history.publish(tmp_path / "upstream.git")
    (tmp_path / "ps.yaml").write_text(
        f"upstream: {{git: {url}}}\nsource_root: /src\npatches:\n"
        "  - {pr: 1, why: one}\n  - {pr: 2, why: two}\n  - {pr: 3, why: three}\n"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "image: example/sglang\n"
        "tags: '^nightly-dev-cu13-(?P<date>\\d{8})-(?P<sha>[0-9a-f]{8})$'\n"
        "patchsets: [ps.yaml]\nservice: {model: {path: /m}, gpus: null}\n"
    )
    listing = tmp_path / "tags.txt"
    listing.write_text(
        "\n".join(["latest", *reversed(nightlies), "nightly-dev-cu13-20260604-deadbeef"])
    )

    runner = CliRunner()
    done = runner.invoke(
        app,
        ["status", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "4", "--json"],
    )
    assert done.exit_code == 0, done.stdout
    doc = json.loads(done.stdout)
    assert [t["tag"] for t in doc["tags"]] == [*nightlies, "nightly-dev-cu13-20260604-deadbeef"]
    assert doc["tags"][-1]["commit"] is None  # a tag whose commit upstream does not know
    first = {p["pr"]: p["first_nightly"] for p in doc["patches"]}
    assert first == {1: nightlies[1], 2: nightlies[2], 3: None}
    assert doc["patches"][0]["contained"] == [False, True, True, None]
    assert doc["patches"][2]["state"] == "open"

    md = runner.invoke(
        app,
        [
            "status",
            "--recipe",
            str(recipe),
            "--tags-from",
            str(listing),
            "--tags",
            "3",
            "--markdown",
        ],
    )
    assert md.exit_code == 0
    assert "| #1 | merged | " + nightlies[1] in md.stdout
    assert "| #3 | open | none yet |" in md.stdout
