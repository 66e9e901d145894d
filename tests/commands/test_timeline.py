"""`status --tags`: which nightly first contains each patch, on a real git history."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config import load_patchset
from patchkeeper.demo.history import Edit, History
from patchkeeper.verify.witness import Verdict

PATCHSET = """\
# Fixes we carry.
upstream: {{git: {url}}}
source_root: /src
patches:
  # the first fix
  - pr: 1
    why: one
  - pr: 2  # still needed?
    why: two
  - pr: 3
    why: three
"""


def nightly_history(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Three nightlies: #1 lands before the second, #2 before the third, #3 stays open."""
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
    (tmp_path / "ps.yaml").write_text(PATCHSET.format(url=url))
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
    return recipe, listing, nightlies


def test_first_nightly_per_patch(tmp_path: Path) -> None:
    recipe, listing, nightlies = nightly_history(tmp_path)
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
    # In from the window's first tag on: it may have landed in an earlier nightly.
    assert f"| #1 | merged | at or before {nightlies[1]} |" in md.stdout
    assert f"| #2 | merged | {nightlies[2]} |" in md.stdout
    assert "| #3 | open | none yet |" in md.stdout


def test_prune_retires_what_every_tracked_nightly_has_keeping_comments(tmp_path: Path) -> None:
    recipe, listing, nightlies = nightly_history(tmp_path)
    patchset = tmp_path / "ps.yaml"
    before = patchset.read_text()
    runner = CliRunner()
    args = ["prune", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "2"]
    unknown = runner.invoke(app, [*args, "--write"])  # newest tag's commit is unknown upstream
    assert unknown.exit_code == 0 and "every patch is still needed" in unknown.stdout
    assert patchset.read_text() == before

    listing.write_text("\n".join(nightlies))  # the last two nightlies both have #1, not #2
    dry = runner.invoke(app, args)
    assert dry.exit_code == 0 and "retire pr-1" in dry.stdout and "pr-2" not in dry.stdout
    assert patchset.read_text() == before

    done = runner.invoke(app, [*args, "--write"])
    assert done.exit_code == 0, done.stdout
    after = patchset.read_text()
    assert after.startswith("# Fixes we carry.\n")
    assert any(
        line.startswith("  - pr: 2") and "# still needed?" in line for line in after.splitlines()
    )
    loaded = load_patchset(patchset)
    assert [p.pr for p in loaded.patches] == [2, 3]
    [retired] = loaded.retired
    assert retired.model_extra == {"pr": 1, "why": "one"}
    assert "in every tracked nightly (2 tags" in retired.reason and nightlies[1] in retired.reason


def test_prune_retires_what_a_verify_report_proves_vanilla_already_fixes(tmp_path: Path) -> None:
    recipe, listing, nightlies = nightly_history(tmp_path)
    listing.write_text(nightlies[0])  # the oldest nightly contains none of the PRs
    patchset = tmp_path / "ps.yaml"
    report = tmp_path / "verify.json"
    verdicts = [
        Verdict("ps/pr-2", "tool_stream_blocks", "passed", "passed", False, retirable=True),
        Verdict("ps/pr-3", "mid_conversation_system", "failed", "passed", True, False),
        Verdict("other/pr-1", "count_tokens", "passed", "passed", False, retirable=True),
    ]
    report.write_text(
        json.dumps({"image": "x/sglang:n1", "patches": [asdict(v) for v in verdicts]})
    )
    runner = CliRunner()
    args = ["prune", "--recipe", str(recipe), "--tags-from", str(listing)]
    done = runner.invoke(app, [*args, "--witness-report", str(report), "--write"])
    assert done.exit_code == 0, done.stdout
    loaded = load_patchset(patchset)
    assert [p.pr for p in loaded.patches] == [1, 3]  # other/pr-1 is another patchset's
    [retired] = loaded.retired
    assert retired.reason == "witness tool_stream_blocks already passes on vanilla x/sglang:n1"

    report.write_text('{"checks": []}')
    bad = runner.invoke(app, [*args, "--witness-report", str(report)])
    assert bad.exit_code == 2 and "no 'patches' list" in bad.output


SECOND = """\
upstream: {{git: {url}}}
source_root: /other
patches:
  - pr: 2
    id: two-again
    why: the same fix, carried by a second patchset
    witness: tool_stream_blocks
    exclude: [test/**]
  # keep me
  - pr: 3
    why: three
"""


def _two_patchsets(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    recipe, listing, nightlies = nightly_history(tmp_path)
    url = (tmp_path / "ps.yaml").read_text().split("git: ")[1].split("}")[0]
    (tmp_path / "second.yaml").write_text(SECOND.format(url=url))
    recipe.write_text(recipe.read_text().replace("[ps.yaml]", "[ps.yaml, second.yaml]"))
    return recipe, listing, nightlies


def test_status_and_prune_read_every_patchset(tmp_path: Path) -> None:
    recipe, listing, nightlies = _two_patchsets(tmp_path)
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["status", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "4", "--json"],
    )
    assert done.exit_code == 0, done.stdout
    ids = [p["id"] for p in json.loads(done.stdout)["patches"]]
    assert ids == ["ps/pr-1", "ps/pr-2", "ps/pr-3", "second/two-again", "second/pr-3"]

    listing.write_text("\n".join(nightlies[2:]))  # the newest nightly has #1 and #2
    args = ["prune", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "1"]
    pruned = runner.invoke(app, [*args, "--write"])
    assert pruned.exit_code == 0, pruned.stdout
    second = load_patchset(tmp_path / "second.yaml")
    assert [p.pr for p in second.patches] == [3]
    [retired] = second.retired
    assert retired.model_extra == {
        "pr": 2,
        "id": "two-again",
        "why": "the same fix, carried by a second patchset",
        "witness": "tool_stream_blocks",
        "exclude": ["test/**"],
    }
    assert "# keep me" in (tmp_path / "second.yaml").read_text()
    assert [p.pr for p in load_patchset(tmp_path / "ps.yaml").patches] == [3]


def test_prune_refuses_to_retire_on_fewer_nightlies_than_asked(tmp_path: Path) -> None:
    recipe, listing, nightlies = nightly_history(tmp_path)
    listing.write_text(nightlies[-1])  # one nightly, which has #1 and #2
    before = (tmp_path / "ps.yaml").read_text()
    args = ["prune", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "14"]
    refused = CliRunner().invoke(app, [*args, "--write"])
    assert refused.exit_code == 2
    assert f"asked to retire on 14 nightlies, found 1 in {listing}" in refused.output
    assert (tmp_path / "ps.yaml").read_text() == before


def test_prune_on_fewer_nightlies_retires_by_witness_only(tmp_path: Path) -> None:
    recipe, listing, nightlies = nightly_history(tmp_path)
    listing.write_text(nightlies[-1])  # has #1 by ancestry, but one nightly is not 14
    report = tmp_path / "verify.json"
    verdict = Verdict("ps/pr-3", "mid_conversation_system", "passed", "passed", False, True)
    report.write_text(json.dumps({"image": "x/sglang:n3", "patches": [asdict(verdict)]}))
    args = ["prune", "--recipe", str(recipe), "--tags-from", str(listing), "--tags", "14"]
    done = CliRunner().invoke(app, [*args, "--witness-report", str(report), "--write"])
    assert done.exit_code == 0, done.output
    assert "found 1 in" in done.output and "retiring nothing by ancestry" in done.output
    loaded = load_patchset(tmp_path / "ps.yaml")
    assert [p.pr for p in loaded.patches] == [1, 2]
    assert [r.model_extra["pr"] for r in loaded.retired] == [3]
