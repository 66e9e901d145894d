"""`patchkeeper nightly` end to end on the demo: a real nightly image in the engine, real git
remotes, the real adapter tier, and GitHub's REST API served by the local double."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from itertools import takewhile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from typer.testing import CliRunner, Result

from patchkeeper.cli import app
from patchkeeper.commands import nightly as nightly_command
from patchkeeper.commands.nightly import RecipeRun, exit_code, output_entry
from patchkeeper.demo.scenario import PROTOCOL
from patchkeeper.demo.setup import Demo
from patchkeeper.errors import EXIT_CONFLICT, EXIT_OK
from patchkeeper.verify.smoke import CheckResult, Status
from patchkeeper.verify.tiers import Outcome, Runtime
from patchkeeper.verify.witness import judge
from tests.github_double import GitHubDouble
from tests.overlay.locks import make_lock

runner = CliRunner()
CONFIG_REPO = "pk-test/serving-config"
BRANCH = "patchkeeper/nightly"

BROKEN_DIFF = f"""\
--- a/{PROTOCOL}
+++ b/{PROTOCOL}
@@ -1,3 +1,3 @@
 this context
-is not in
+the image's file
 at all
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def config_repo(demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository the workflow runs in: the recipe and patchset, with an origin."""
    origin, work = tmp_path / "origin.git", tmp_path / "config"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work.mkdir()
    for name in ("demo.yaml", "sglang-demo.yaml"):
        shutil.copy(demo.recipe.parent / name, work / name)
    git(work, "init", "-q", "-b", "main")
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "add", ".")
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "init")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    monkeypatch.chdir(work)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_REPOSITORY", CONFIG_REPO)
    return work


def nightly(*extra: str) -> Result:
    # The demo image holds the sources only (no Python): prove on the host.
    local = ["--image-source", "engine"]  # the demo image is in the engine only
    return runner.invoke(
        app, ["nightly", "--recipe", "demo.yaml", "--runtime", "host", *local, *extra]
    )


def remote_tip(work: Path) -> str:
    return git(work, "ls-remote", "origin", f"refs/heads/{BRANCH}").split()[0]


def test_nightly_commits_proves_and_opens_then_updates_one_pull_request(
    config_repo: Path, github_double: GitHubDouble, demo: Demo, tmp_path: Path
) -> None:
    github_double.add_repo(CONFIG_REPO)
    main = git(config_repo, "rev-parse", "HEAD")

    first = nightly()
    assert first.exit_code == 0, first.output
    tip = remote_tip(config_repo)
    assert git(config_repo, "rev-parse", f"{tip}^") == main
    tree = git(config_repo, "ls-tree", "-r", "--name-only", tip).splitlines()
    tag = demo.image.rsplit(":", 1)[1]
    assert f"overlays/demo/{tag}" in tree  # the friendly link, committed as a symlink
    assert any(p.endswith("/patchkeeper.lock.json") for p in tree)
    assert any(p.endswith("/sglang/srt/entrypoints/anthropic/protocol.py") for p in tree)
    assert not [p for p in tree if p.endswith(".patchkeeper.lock") or "/.tmp-" in p]
    # The job's own checkout is left as it was: same branch, same HEAD, nothing staged.
    assert git(config_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(config_repo, "status", "--porcelain") == "?? overlays/"

    [pull] = [p for (repo, _), p in github_double.pulls.items() if repo == CONFIG_REPO]
    assert (pull.head_ref, pull.base_ref, pull.state) == (BRANCH, "main", "open")
    assert pull.title == f"patchkeeper: overlays for {tag}"
    body = pull.body or ""
    assert "| \\#\u206026773 |" in body and "| overlay |" in body  # "#26773", not a link
    assert "| pass | `mid_conversation_system` |" in body
    assert "- `sglang-demo/pr-26773`: proven" in body
    # #24294 is in this nightly: its witness passes on the image's own files.
    assert "- `sglang-demo/pr-24294`: retirable: tool_stream_blocks already passes" in body
    assert "Already in this nightly: #24294." in body
    summary = (tmp_path / "summary.md").read_text()
    assert body in summary

    second = nightly("--verify", "none")
    assert second.exit_code == 0, second.output
    assert remote_tip(config_repo) == tip  # same content: nothing pushed
    assert len([k for k in github_double.pulls if k[0] == CONFIG_REPO]) == 1
    assert github_double.count("PATCH", f"/repos/{CONFIG_REPO}/pulls/") == 1
    assert github_double.count("POST", f"/repos/{CONFIG_REPO}/pulls") == 1
    assert "written, not verified" in (github_double.pulls[(CONFIG_REPO, pull.number)].body or "")


def test_a_patch_that_stops_applying_opens_one_issue(
    config_repo: Path, github_double: GitHubDouble
) -> None:
    github_double.add_repo(CONFIG_REPO)
    (config_repo / "broken.diff").write_text(BROKEN_DIFF)
    patchset = config_repo / "sglang-demo.yaml"
    patchset.write_text(
        patchset.read_text() + "  - diff: broken.diff\n    why: a local fix upstream rewrote\n"
    )
    hostile = "@org/team <img src=x> [x](javascript:alert(1)) #1 http://e.com"
    patchset.write_text(
        patchset.read_text().replace("a local fix upstream rewrote", json.dumps(hostile))
    )
    for _ in range(2):
        result = nightly("--verify", "none")
        assert result.exit_code == 1, result.output
    [issue] = github_double.issues.values()
    for text in (issue.body or "", result.stdout):  # the same text stays text everywhere
        assert_inert(text)
        assert "@\u2060org/team &lt;img src=x&gt; [x](javascript:alert(1))" in MD.render(text)
    assert issue.title == "patchkeeper: patch sglang-demo/broken no longer applies (demo)"
    assert issue.labels == ["patchkeeper"]
    assert "conflict sglang-demo/broken " in (issue.body or "") and "was not written" in (
        issue.body or ""
    )
    assert github_double.count("PATCH", f"/repos/{CONFIG_REPO}/issues/") == 1
    # Nothing was written for the recipe, so there is nothing to propose.
    assert git(config_repo, "ls-remote", "origin", f"refs/heads/{BRANCH}") == ""
    assert not [k for k in github_double.pulls if k[0] == CONFIG_REPO]


def test_recipes_and_options_come_from_the_environment_the_action_sets(
    config_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_REPOSITORY")
    monkeypatch.setenv("PATCHKEEPER_RECIPES", "demo.yaml\ndemo.yaml")
    monkeypatch.setenv("PATCHKEEPER_OUT", "fleet")
    monkeypatch.setenv("PATCHKEEPER_VERIFY", "none")
    result = runner.invoke(app, ["nightly", "--no-push", "--image-source", "engine"])
    assert result.exit_code == 0, result.output
    assert result.output.count("| `demo.yaml` |") == 2
    tree = git(config_repo, "ls-tree", "-r", "--name-only", BRANCH)
    assert "fleet/" in tree and "overlays/" not in tree
    assert git(config_repo, "ls-remote", "origin").count("refs/heads/") == 1  # main only


def test_a_failing_recipe_does_not_stop_the_others_and_outputs_are_written(
    config_repo: Path, github_double: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github_double.add_repo(CONFIG_REPO)
    (config_repo / "broken.yaml").write_text("image: [not, a, string]\n")
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    done = runner.invoke(
        app,
        [
            "nightly",
            "--recipe",
            "broken.yaml",
            "--recipe",
            "demo.yaml",
            "--verify",
            "none",
            "--outputs",
            str(outputs),
            "--image-source",
            "engine",
        ],
    )
    assert done.exit_code == 2, done.output  # the worst of the night: bad input
    summary = (tmp_path / "summary.md").read_text()
    assert "| `broken.yaml` | - | - | **error** (exit 2)" in summary
    assert "| `demo.yaml` |" in summary and "### `demo.yaml`" in summary
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert values["changed"] == "true" and values["conflicts"] == "[]"
    assert values["pr-number"].isdigit() and values["pr-url"].startswith("http")
    assert Path(values["report"]).read_text().startswith("## patchkeeper nightly")
    assert summary.strip() in done.stdout  # Markdown printed verbatim, rows unwrapped


MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")


def assert_inert(markdown: str) -> None:
    """No raw HTML, no link or image, no mention anywhere in rendered Markdown."""
    for token in MD.parse(markdown):
        for child in [token, *(token.children or [])]:
            assert child.type not in ("html_inline", "html_block", "link_open", "image"), child
            if child.type == "text":
                assert not MENTION.search(child.content), child.content


def test_any_failure_of_one_recipe_is_its_row_section_and_issue_and_the_others_go_on(
    config_repo: Path,
    github_double: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    github_double.add_repo(CONFIG_REPO)
    recipe = (config_repo / "demo.yaml").read_text()
    # A model whose tokenizer config names a template with a list: bad input, exit 2.
    model = tmp_path / "model"
    model.mkdir()
    templates = [{"name": ["default"], "template": "{{ messages }}"}]
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": templates}))
    (config_repo / "model.yaml").write_text(re.sub(r"host_path: .*", f"host_path: {model}", recipe))
    # A recipe on which patchkeeper itself fails: a bug, which must not end the night.
    shutil.copy(config_repo / "demo.yaml", config_repo / "crash.yaml")
    plan = nightly_command.make_plan

    def make_plan(recipe: Path, *args: object) -> object:
        if recipe.name == "crash.yaml":
            raise KeyError("shape")
        return plan(recipe, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(nightly_command, "make_plan", make_plan)
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    outputs = tmp_path / "github_output"
    recipes = ["--recipe", "crash.yaml", "--recipe", "model.yaml"]
    done = nightly(*recipes, "--verify", "none", "--outputs", str(outputs))
    assert done.exit_code == 70, done.output  # the worst of the night: a bug
    summary = (tmp_path / "summary.md").read_text()
    assert "| `crash.yaml` | - | - | **error** (exit 70): unexpected KeyError" in summary
    [log] = re.findall(r"traceback in (/\S+?\.log)", summary)  # in its section, verbatim
    assert "KeyError: 'shape'" in Path(log).read_text()
    assert "| `model.yaml` | - | - | **error** (exit 2)" in summary
    assert "tokenizer_config.json: chat_template[0].name: expected a string, found list" in summary
    assert "| `demo.yaml` |" in summary and "### `demo.yaml`" in summary
    # The healthy recipe was committed and proposed; each failure has its issue.
    tag = git(config_repo, "ls-tree", "-r", "--name-only", remote_tip(config_repo))
    assert "overlays/demo/" in tag
    [pull] = [p for (repo, _), p in github_double.pulls.items() if repo == CONFIG_REPO]
    assert "### `crash.yaml`" in (pull.body or "")
    issues = {issue.title: issue.body or "" for issue in github_double.issues.values()}
    assert set(issues) == {
        "patchkeeper: nightly failed for crash",
        "patchkeeper: nightly failed for model",
    }
    assert "a bug in patchkeeper" in issues["patchkeeper: nightly failed for crash"]
    assert "chat_template[0].name" in issues["patchkeeper: nightly failed for model"]
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert values["changed"] == "true" and values["pr-number"] == str(pull.number)


def test_github_down_while_publishing_is_exit_3_and_the_other_posts_still_go_out(
    config_repo: Path, github_double: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github_double.add_repo(CONFIG_REPO)
    (config_repo / "broken.yaml").write_text("image: [not, a, string]\n")
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    outputs = tmp_path / "github_output"
    github_double.fail_next(4, 502)  # the pull request's lookup, and its three retries
    done = nightly("--recipe", "broken.yaml", "--verify", "none", "--outputs", str(outputs))
    assert done.exit_code == 3, done.output  # unreachable outranks the bad recipe's 2
    assert f"GET {github_double.api_url}/repos/{CONFIG_REPO}/pulls?" in done.output
    assert "too many 502 error responses" in done.output
    [issue] = github_double.issues.values()  # posted after the pull request failed
    assert issue.title == "patchkeeper: nightly failed for broken"
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert values["pr-number"] == "" and values["changed"] == "true"
    assert "| `demo.yaml` |" in (tmp_path / "summary.md").read_text()


def read_outputs(text: str) -> dict[str, str]:
    """`$GITHUB_OUTPUT` as the runner reads it: lines end at CR, LF or CRLF; `name=value`,
    or `name<<DELIMITER`, the value's lines, then the delimiter alone on a line."""
    values: dict[str, str] = {}
    lines = iter(re.split(r"\r\n|\r|\n", text)[:-1])
    for line in lines:
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
        else:
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            value = "\n".join(takewhile(delimiter.__ne__, lines))
        assert name not in values, f"{name} set twice"
        values[name] = value
    return values


def test_a_url_github_answers_stays_text_on_the_terminal_and_in_the_step_outputs(
    config_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GitHubDouble(token="t" * 40) as double:  # not the fixture: these URLs are not RFC 3986
        # Rich markup closing a tag never opened, and a line break adding a step output.
        double.web_url += "/[/x]\nchanged=false"
        double.add_repo(CONFIG_REPO)
        monkeypatch.setenv("GITHUB_API_URL", double.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", "t" * 40)
        monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
        outputs = tmp_path / "github_output"
        result = nightly("--verify", "none", "--outputs", str(outputs))
    assert result.exit_code == 0, result.output
    url = f"{double.web_url}/{CONFIG_REPO}/pull/1"
    assert f"opened pull #1: {url}" in result.output
    values = read_outputs(outputs.read_bytes().decode())
    assert values["changed"] == "true" and values["pr-url"] == url


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_a_step_output_is_one_value_whatever_it_holds(first: str, second: str) -> None:
    text = output_entry("pr-url", first) + output_entry("changed", second)
    values = read_outputs(text)
    assert list(values) == ["pr-url", "changed"]
    assert values == {
        "pr-url": re.sub(r"\r\n?", "\n", first),
        "changed": re.sub(r"\r\n?", "\n", second),
    }


def test_an_unusable_summary_or_report_location_is_refused_before_any_work(
    config_repo: Path, github_double: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github_double.add_repo(CONFIG_REPO)
    summary = tmp_path / "summary-dir"
    summary.mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = nightly("--verify", "none")
    assert result.exit_code == 2, result.output
    assert f"GITHUB_STEP_SUMMARY: {summary} is a directory" in result.output
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path / "gone"))
    result = nightly("--verify", "none", "--outputs", str(tmp_path / "github_output"))
    assert result.exit_code == 2, result.output
    assert f"RUNNER_TEMP={tmp_path / 'gone'}: not a directory" in result.output
    # Refused before any work: nothing synced, committed, pushed or posted.
    assert not (config_repo / "overlays").exists()
    assert git(config_repo, "ls-remote", "origin", f"refs/heads/{BRANCH}") == ""
    assert github_double.requests == []
    assert not (tmp_path / "github_output").exists()


def _night(witness_overlay: Status, witness_vanilla: Status, allow: bool = False) -> RecipeRun:
    """One recipe's night with one patch whose witness `tool_stream_blocks` ran as given."""
    patch = {
        "id": "set/pr-1", "patchset": "set", "pr": 1, "diff_file": None, "state": "applied",
        "via": "ported", "pr_state": "merged", "title": None, "why": "", "head": None,
        "witness": "tool_stream_blocks", "merge_commit": None, "base": None,
        "diff_sha256": "d" * 64, "hunks": {"applied": 1, "present": 0, "conflict": 0},
        "files": [],
    }  # fmt: skip
    lock = make_lock("f" * 64, patches=[patch])
    checks = [CheckResult("tool_stream_blocks", witness_overlay)]
    vanilla = [CheckResult("tool_stream_blocks", witness_vanilla)]
    verdicts = judge(lock.patches, vanilla, checks)
    proof = Outcome("adapter", Runtime.HOST, checks, vanilla, verdicts)
    return RecipeRun(Path("demo.yaml"), lock, proof, allow)


def test_a_witness_that_proves_nothing_fails_the_night_as_it_fails_verify() -> None:
    proven = _night(Status.PASSED, Status.FAILED)
    assert proven.ok and proven.unproven == []
    assert "| verified (1 passed) |" in proven.headline()
    not_run = _night(Status.NOT_RUN, Status.FAILED)  # the model never exercised it
    assert not not_run.ok and not_run.unproven == ["set/pr-1"]
    assert "| **unproven**: `set/pr-1` (1 not run) |" in not_run.headline()
    assert exit_code([proven], []) == EXIT_OK and exit_code([proven, not_run], []) == EXIT_CONFLICT
    allowed = _night(Status.NOT_RUN, Status.FAILED, allow=True)  # --allow-unproven
    assert allowed.ok and "| verified (1 not run) |" in allowed.headline()
    retirable = _night(Status.PASSED, Status.PASSED)  # already upstream: not unproven
    assert retirable.ok and retirable.unproven == []


def test_publishing_without_a_token_fails_before_any_work(
    config_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    result = nightly()
    assert result.exit_code == 2, result.output
    assert result.output.startswith(
        f"error: nightly: publishing to {CONFIG_REPO} (--repository or GITHUB_REPOSITORY) "
        "needs GITHUB_TOKEN (or GH_TOKEN)"
    )
    assert "nightly: demo.yaml" not in result.output  # no recipe was synced or proven
    assert not (config_repo / "overlays").exists()
    assert git(config_repo, "branch", "--list", BRANCH) == ""


def test_a_dry_run_says_what_the_night_would_do_and_does_none_of_it(
    config_repo: Path, github_double: GitHubDouble, demo: Demo
) -> None:
    github_double.add_repo(CONFIG_REPO)
    result = nightly("--dry-run")
    assert result.exit_code == 0, result.output
    assert "### `demo.yaml`" in result.stdout and "| \\#\u206026773 |" in result.stdout
    lines = [line for line in result.output.splitlines() if line.startswith("dry run: ")]
    root = config_repo / "overlays"  # beside the recipe, wherever nightly runs from
    assert lines == [
        f"dry run: would write demo.yaml's overlay for {demo.image} under {root} and prove "
        "it with the adapter tier",
        f"dry run: would commit {root} to branch {BRANCH} and push it to origin",
        f"dry run: would open or update a pull request on {CONFIG_REPO} into the checked-out "
        "branch",
        "dry run: nothing was written, committed or published",
    ]
    assert not (config_repo / "overlays").exists()
    assert git(config_repo, "branch", "--list", BRANCH) == ""
    assert git(config_repo, "ls-remote", "origin", f"refs/heads/{BRANCH}") == ""
    assert git(config_repo, "status", "--porcelain") == ""
    assert not github_double.pulls and not github_double.issues
    assert not [r for r in github_double.requests if r.method != "GET"]
