"""GitHub enrichment against the local REST double: real PyGithub, real HTTP, real git."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import urllib3.util.retry
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config.models import Patch, Upstream
from patchkeeper.demo.history import Edit, History
from patchkeeper.demo.scenario import REPOSITORY, DemoUpstream, build_upstream
from patchkeeper.demo.setup import Demo
from patchkeeper.errors import ConfigError, UnreachableError, UpstreamError
from patchkeeper.paths import cache_dir
from patchkeeper.publish.github import GitHubTracker, client_from_env
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.github import GitHubResolver, GitHubSettings, with_github
from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import PrState, UpstreamBlob, UpstreamChange
from tests.github_double import (
    ChangedFile,
    GitHubDouble,
    LoggedRequest,
    add_demo_pulls,
    assert_valid,
    demo_recipe_on_github,
    iso,
    openapi,
)

DEMO_PRS = (24294, 26773, 28906, 25876)
MERGED = (24294, 26773, 28906)


@pytest.fixture(scope="module")
def demo_upstream(tmp_path_factory: pytest.TempPathFactory) -> DemoUpstream:
    """The demo's upstream history alone (no image, no Docker)."""
    return build_upstream(tmp_path_factory.mktemp("demo-upstream"))


def resolver(url: str, repo: str = REPOSITORY) -> GitHubResolver:
    git = GitResolver(Upstream(github=repo, git=url), GitMirror(url))
    return GitHubResolver(git, GitHubSettings.from_env())


def resolve_all(
    resolver: GitHubResolver | GitResolver, numbers: tuple[int, ...] = DEMO_PRS
) -> dict[int, UpstreamChange]:
    patches = [Patch(pr=n, why="w") for n in numbers]
    resolver.prepare(patches)
    return {p.pr or 0: resolver.resolve("ps", p) for p in patches}


def per_pr(requests: list[LoggedRequest]) -> dict[int, list[LoggedRequest]]:
    found: dict[int, list[LoggedRequest]] = {}
    for r in requests:
        number = int(r.path.split("/pulls/")[1].split("/")[0])
        found.setdefault(number, []).append(r)
    return found


def _run(double: GitHubDouble, upstream: DemoUpstream) -> list[LoggedRequest]:
    """The requests one resolution of the demo PRs made."""
    since = len(double.requests)
    resolve_all(resolver(upstream.url))
    return double.requests[since:]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_prs_carry_githubs_titles_states_and_files(
    github_double: GitHubDouble, demo_upstream: DemoUpstream
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    changes = resolve_all(resolver(demo_upstream.url))
    for number, change in changes.items():
        pull = github_double.pulls[(REPOSITORY, number)]
        assert change.title == pull.title and f"#{number}" not in change.title
        assert change.changed_files == tuple(f.filename for f in pull.files)
        assert change.head == pull.head_sha
    for number in MERGED:
        pull = github_double.pulls[(REPOSITORY, number)]
        assert changes[number].state is PrState.MERGED
        assert changes[number].merge_commit == pull.merge_commit_sha
        assert changes[number].merged_at == pull.merged_at
    opened = changes[25876]
    assert opened.state is PrState.OPEN and opened.merged_at is None
    # GitHub reports the test merge as merge_commit_sha of an open PR: never a landing.
    assert github_double.pulls[(REPOSITORY, 25876)].merge_commit_sha is not None
    assert opened.merge_commit is None
    assert {r.path for r in github_double.requests}.isdisjoint({f"/repos/{REPOSITORY}"})


def test_a_local_diffs_blobs_come_from_the_mirror_without_asking_github(
    github_double: GitHubDouble, demo_upstream: DemoUpstream
) -> None:
    online = resolver(demo_upstream.url)
    online.prepare([])
    bare = demo_upstream.url.removeprefix("file://")

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", bare, *args], capture_output=True, check=True).stdout

    name = git("ls-tree", "-r", "--name-only", "main").decode().splitlines()[0]
    blob = git("rev-parse", f"main:{name}").decode().strip()
    since = len(github_double.requests)
    named = (PurePosixPath(name), blob[:7])
    assert online.blobs([named]) == {named: UpstreamBlob(git("cat-file", "blob", blob))}
    assert github_double.requests[since:] == []


def test_githubs_open_overrides_gits_closed_for_a_conflicting_pr(
    github_double: GitHubDouble, tmp_path: Path
) -> None:
    history = History(tmp_path / "work", {"f.txt": b"base\n"})
    history.commit("Later change on main", [Edit("f.txt", "base\n", "main\n")])
    history.open_pr(7, "Conflicts with main", [Edit("f.txt", "base\n", "pr\n")], base="HEAD~1")
    history.closed_pr(8, "Abandoned", [Edit("f.txt", "main\n", "gone\n")])
    url = history.publish(tmp_path / "upstream.git")
    assert 7 not in history.merge_refs  # no test merge: git alone cannot tell open from closed
    for number, state in ((7, "open"), (8, "closed")):
        github_double.add_pull(
            "o/r",
            number,
            title=f"GitHub title {number}",
            state=state,
            head_sha=history.pulls[number],
            base_sha=history.head("main"),
            files=["f.txt"],
        )
    git_only = resolve_all(GitResolver(Upstream(git=url), GitMirror(url)), (7, 8))
    assert git_only[7].state is PrState.CLOSED
    enriched = resolve_all(resolver(url, "o/r"), (7, 8))
    assert enriched[7].state is PrState.OPEN and enriched[7].title == "GitHub title 7"
    assert enriched[8].state is PrState.CLOSED
    assert enriched[7].diff == git_only[7].diff  # the diff is still git's


def test_cold_costs_two_requests_per_pr_and_warm_only_revalidates_open_ones(
    github_double: GitHubDouble, demo_upstream: DemoUpstream, private_cache: Path
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    cold = per_pr(_run(github_double, demo_upstream))
    for number in DEMO_PRS:
        assert [(r.path.rsplit("/", 1)[-1], r.status) for r in cold[number]] == [
            (str(number), 200),
            ("files", 200),
        ]
        assert cold[number][1].query["per_page"] == "100"
    warm = _run(github_double, demo_upstream)
    assert [(r.path, r.status, r.conditional) for r in warm] == [
        (f"/repos/{REPOSITORY}/pulls/25876", 304, True)
    ]
    assert github_double.remaining == github_double.limit - 8  # the 304 was free
    cached = private_cache / "github" / github_double.host.replace(":", "-") / REPOSITORY
    stored = json.loads((cached / "pulls" / "25876.json").read_text())
    assert stored["etag"].startswith('W/"') and stored["pull"]["number"] == 25876


def test_an_open_pr_that_changed_upstream_is_refreshed_then_cached_once_merged(
    github_double: GitHubDouble, demo_upstream: DemoUpstream
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    _run(github_double, demo_upstream)
    files = [*github_double.pulls[(REPOSITORY, 25876)].files, ChangedFile("docs/notes.md", "added")]
    github_double.update_pull(
        REPOSITORY, 25876, title="[Anthropic] Keep raw tool arguments", files=files
    )
    since = len(github_double.requests)
    change = resolve_all(resolver(demo_upstream.url))[25876]
    assert change.title == "[Anthropic] Keep raw tool arguments"
    assert change.changed_files[-1] == "docs/notes.md"
    assert [
        (r.path.rsplit("/", 1)[-1], r.status, r.conditional) for r in github_double.requests[since:]
    ] == [
        ("25876", 200, True),
        ("files", 200, False),
    ]
    merge = demo_upstream.history.merge_refs[25876]
    github_double.update_pull(
        REPOSITORY,
        25876,
        state="closed",
        merged=True,
        merge_commit_sha=merge,
        merged_at=iso(time.time()),
    )
    merged = resolve_all(resolver(demo_upstream.url))[25876]
    assert merged.state is PrState.MERGED and merged.merge_commit == merge
    since = len(github_double.requests)
    resolve_all(resolver(demo_upstream.url))
    assert github_double.requests[since:] == []  # merged: cached for good


@pytest.mark.parametrize("status", [403, 429])
def test_a_near_rate_limit_reset_is_waited_out(
    github_double: GitHubDouble, demo_upstream: DemoUpstream, status: int
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    # The mirror first (git alone), so the reset is still ahead when the API is asked.
    resolve_all(GitResolver(Upstream(git=demo_upstream.url), GitMirror(demo_upstream.url)))
    github_double.set_rate_limit(0, int(time.time()) + 2, status=status)
    changes = resolve_all(resolver(demo_upstream.url), (24294,))
    assert changes[24294].title == "[Anthropic] Track the open content block's type"
    statuses = [r.status for r in github_double.requests]
    # The double answers `status` until the reset: a 200 after it proves the wait.
    assert statuses[0] == status and statuses[1:] == [200, 200]


@pytest.mark.parametrize("status", [403, 429])
def test_a_far_rate_limit_reset_fails_with_exit_3_and_the_reset_time(
    github_double: GitHubDouble,
    demo_upstream: DemoUpstream,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    monkeypatch.setenv("PATCHKEEPER_GITHUB_MAX_WAIT", "5")
    reset = int(time.time()) + 3600
    github_double.set_rate_limit(0, reset, status=status)
    with pytest.raises(UnreachableError) as err:
        resolve_all(resolver(demo_upstream.url))
    assert err.value.exit_code == 3
    assert iso(reset) in str(err.value) and "PATCHKEEPER_GITHUB_MAX_WAIT=5" in str(err.value)
    assert [r.status for r in github_double.requests] == [status]  # no retry storm


CONFIG_REPO = "pk-test/serving-config"


def tracker() -> GitHubTracker:
    """What `nightly` publishes through, configured from the environment as there."""
    return GitHubTracker(client_from_env(), CONFIG_REPO)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait urllib3's retries ask for, recorded instead of slept."""
    waits: list[float] = []

    class Clock:
        sleep = staticmethod(waits.append)
        time = staticmethod(time.time)

    monkeypatch.setattr(urllib3.util.retry, "time", Clock)
    return waits


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_publishing_through_a_5xx_that_outlasts_the_retries_is_exit_3_naming_the_endpoint(
    github_double: GitHubDouble, slept: list[float], status: int
) -> None:
    github_double.add_repo(CONFIG_REPO)
    github_double.fail_next(4, status)
    with pytest.raises(UnreachableError) as err:
        tracker().open_issue("patchkeeper: t", "body")
    assert err.value.exit_code == 3
    endpoint = f"GET {github_double.api_url}/repos/{CONFIG_REPO}/issues?"
    assert endpoint in str(err.value) and f"too many {status} error responses" in str(err.value)
    assert [r.status for r in github_double.requests] == [status] * 4  # 3 retries
    assert tracker().open_issue("patchkeeper: t", "body").created  # and once GitHub is back


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_is_waited_only_up_to_the_maximum(
    github_double: GitHubDouble, monkeypatch: pytest.MonkeyPatch, slept: list[float], status: int
) -> None:
    github_double.add_repo(CONFIG_REPO)
    monkeypatch.setenv("PATCHKEEPER_GITHUB_MAX_WAIT", "5")
    github_double.fail_next(1, status, retry_after=2)
    assert tracker().open_issue("patchkeeper: t", "body").created
    assert slept == [2]  # GitHub's Retry-After, within the maximum: waited
    github_double.fail_next(1, status, retry_after=3600)
    with pytest.raises(UnreachableError) as err:
        tracker().open_issue("patchkeeper: u", "body")
    assert err.value.exit_code == 3 and slept == [2]  # failed at once, never the hour
    assert "wait 3600 s (Retry-After)" in str(err.value)
    assert "PATCHKEEPER_GITHUB_MAX_WAIT=5 s" in str(err.value)
    assert [r.status for r in github_double.requests][-1] == status  # no retry after it


def test_a_long_retry_after_while_reading_prs_fails_at_once_too(
    github_double: GitHubDouble,
    demo_upstream: DemoUpstream,
    monkeypatch: pytest.MonkeyPatch,
    slept: list[float],
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    monkeypatch.setenv("PATCHKEEPER_GITHUB_MAX_WAIT", "5")
    github_double.fail_next(1, 403, retry_after=3600)
    with pytest.raises(UnreachableError, match=r"PR #24294 .*wait 3600 s \(Retry-After\)"):
        resolve_all(resolver(demo_upstream.url))
    assert slept == [] and [r.status for r in github_double.requests] == [403]


def test_a_wrong_shaped_reply_while_publishing_is_exit_3_naming_what_was_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with GitHubDouble(token="t" * 40) as double:  # not the fixture: it serves what GitHub won't
        monkeypatch.setenv("GITHUB_API_URL", double.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", "t" * 40)
        double.add_repo(CONFIG_REPO)
        tracker().open_issue("patchkeeper: t", "body")
        [issue] = double.issues.values()
        issue.title = ["not", "a", "title"]  # type: ignore[assignment]
        with pytest.raises(UnreachableError) as err:
            tracker().open_issue("patchkeeper: u", "body")
    assert err.value.exit_code == 3
    assert f"GitHub {CONFIG_REPO}: issue 'patchkeeper: u'" in str(err.value)
    assert "a list where its API documents str" in str(err.value)


def test_an_unknown_pr_is_exit_2_naming_pr_and_repository(
    github_double: GitHubDouble, demo_upstream: DemoUpstream
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    with pytest.raises(UpstreamError) as err:
        resolve_all(resolver(demo_upstream.url), (24294, 99))
    assert err.value.exit_code == 2
    assert f"PR #99 of {REPOSITORY}" in str(err.value) and "404" in str(err.value)


def test_an_unreachable_api_falls_back_to_git_with_a_warning(
    demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("GITHUB_TOKEN", "0" * 40)
    changes = resolve_all(resolver(demo_upstream.url))
    assert changes[24294].title == "[Anthropic] Track the open content block's type (#24294)"
    assert changes[25876].state is PrState.OPEN and changes[24294].changed_files == ()
    warning = " ".join(capsys.readouterr().err.split())
    assert "GitHub API unreachable" in warning and "resolving from git alone" in warning
    assert "0" * 40 not in warning


def test_a_reply_of_the_wrong_shape_is_no_crash_git_answers_with_a_warning(
    demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with GitHubDouble() as double:  # not the fixture: this one serves what GitHub would not
        monkeypatch.setenv("GITHUB_API_URL", double.api_url)
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        monkeypatch.delenv("GH_TOKEN", raising=False)
        add_demo_pulls(double, demo_upstream)
        double.update_pull(REPOSITORY, 24294, title=["not", "a", "title"])
        changes = resolve_all(resolver(demo_upstream.url))
    assert changes[24294].title == "[Anthropic] Track the open content block's type (#24294)"
    warning = " ".join(capsys.readouterr().err.split())
    assert "PR #24294 of patchkeeper-demo/sglang" in warning
    assert "unexpected reply: title: Input should be a valid string" in warning
    assert "resolving from git alone" in warning


def test_a_cached_pr_of_the_wrong_shape_is_fetched_afresh(
    github_double: GitHubDouble, demo_upstream: DemoUpstream
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    resolve_all(resolver(demo_upstream.url), (24294,))
    [entry] = (cache_dir() / "github").rglob("24294.json")
    doc = json.loads(entry.read_text())
    doc["pull"]["head"] = "not an object"
    entry.write_text(json.dumps(doc))
    since = len(github_double.requests)
    changes = resolve_all(resolver(demo_upstream.url), (24294,))
    assert changes[24294].title == "[Anthropic] Track the open content block's type"
    [again, _files] = github_double.requests[since:]
    assert again.path.endswith("/pulls/24294") and not again.conditional


def test_a_rejected_token_is_exit_2_and_never_shown(
    github_double: GitHubDouble, demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    wrong = "f" * 40
    monkeypatch.setenv("GITHUB_TOKEN", wrong)
    with pytest.raises(ConfigError) as err:
        resolve_all(resolver(demo_upstream.url))
    assert err.value.exit_code == 2
    assert "GITHUB_TOKEN" in str(err.value) and "401" in str(err.value)
    assert wrong not in str(err.value) and wrong not in repr(GitHubSettings.from_env())
    assert [(r.status, r.authorized) for r in github_double.requests] == [(401, True)]


def test_anonymous_access_works_and_gh_token_is_read_too(
    github_double: GitHubDouble, demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    monkeypatch.delenv("GITHUB_TOKEN")
    resolve_all(resolver(demo_upstream.url), (24294,))
    assert {r.authorized for r in github_double.requests} == {False}
    monkeypatch.setenv("GH_TOKEN", github_double.token or "")
    resolve_all(resolver(demo_upstream.url), (25876,))
    assert github_double.requests[-1].authorized


def test_github_enterprise_base_url_with_api_v3_prefix(
    demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    with GitHubDouble(token="e" * 40, prefix="/api/v3") as ghe:
        add_demo_pulls(ghe, demo_upstream)
        monkeypatch.setenv("GITHUB_API_URL", ghe.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", "e" * 40)
        assert ghe.api_url.endswith("/api/v3")
        changes = resolve_all(resolver(demo_upstream.url))
        assert changes[25876].state is PrState.OPEN
        assert changes[28906].title == "[Anthropic] Pass inline system turns through"
        assert {r.status for r in ghe.requests} == {200} and len(ghe.requests) == 8
        assert all(r.route for r in ghe.requests)  # every path was under /api/v3
        assert_valid(ghe)
    assert (private_cache / "github" / ghe.host.replace(":", "-") / REPOSITORY / "pulls").is_dir()


def test_offline_mode_makes_no_request(
    github_double: GitHubDouble, demo_upstream: DemoUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_demo_pulls(github_double, demo_upstream)
    monkeypatch.setenv("PATCHKEEPER_OFFLINE", "1")
    url = demo_upstream.url
    chosen = with_github(GitResolver(Upstream(github=REPOSITORY, git=url), GitMirror(url)))
    assert isinstance(chosen, GitResolver)
    changes = resolve_all(chosen)
    assert changes[24294].title and changes[24294].title.endswith("(#24294)")
    assert github_double.requests == []


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_API_URL", "GITHUB_TOKEN", "GH_TOKEN", "PATCHKEEPER_GITHUB_MAX_WAIT"):
        monkeypatch.delenv(name, raising=False)
    assert GitHubSettings.from_env() == GitHubSettings("https://api.github.com", None, None, 60.0)
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    monkeypatch.setenv("GH_TOKEN", "tok")
    settings = GitHubSettings.from_env()
    assert (
        settings.api_url == "https://ghe.example.com/api/v3" and settings.token_source == "GH_TOKEN"
    )
    monkeypatch.setenv("PATCHKEEPER_GITHUB_MAX_WAIT", "soon")
    with pytest.raises(ConfigError, match="PATCHKEEPER_GITHUB_MAX_WAIT"):
        GitHubSettings.from_env()


# --- the double itself ------------------------------------------------------------------------


def test_every_endpoint_answers_in_githubs_published_shapes(github_double: GitHubDouble) -> None:
    """Success and error answers of every endpoint, each validated against the operation's
    response schema for its status code in @octokit/openapi's api.github.com.json."""
    github_double.add_repo("o/r")
    github_double.add_pull(
        "o/r", 1, title="Fix", head_sha="a" * 40, base_sha="b" * 40, files=["a.py", "b.py", "c.py"]
    )
    auth = {"Authorization": f"token {github_double.token}"}
    api = httpx.Client(base_url=github_double.api_url, headers=auth)
    anonymous = httpx.Client(base_url=github_double.api_url)
    expect = [
        (api.get("/rate_limit"), 200),
        (api.get("/repos/o/r"), 200),
        (api.get("/repos/o/nope"), 404),
        (api.get("/repos/o/r/pulls/1"), 200),
        (api.get("/repos/o/r/pulls/2"), 404),
        (api.get("/repos/o/r/pulls/1/files", params={"per_page": 2}), 200),
        (
            api.post("/repos/o/r/pulls", json={"title": "N", "head": "o:nightly", "base": "main"}),
            201,
        ),
        (
            api.post("/repos/o/r/pulls", json={"title": "N", "head": "o:nightly", "base": "main"}),
            422,
        ),
        (
            api.get(
                "/repos/o/r/pulls", params={"state": "open", "head": "o:nightly", "base": "main"}
            ),
            200,
        ),
        (api.patch("/repos/o/r/pulls/2", json={"body": "new", "state": "closed"}), 200),
        (
            api.post(
                "/repos/o/r/issues", json={"title": "Nightly broke", "labels": ["nightly", "bug"]}
            ),
            201,
        ),
        (api.post("/repos/o/r/issues", json={"body": "no title"}), 422),
        (api.get("/repos/o/r/issues", params={"state": "all"}), 200),
        (api.get("/repos/o/r/issues", params={"labels": "nightly,bug"}), 200),
        (
            api.patch("/repos/o/r/issues/3", json={"state": "closed", "state_reason": "completed"}),
            200,
        ),
        (api.post("/repos/o/r/issues/3/comments", json={"body": "fixed by #2"}), 201),
        (api.get("/repos/o/r/issues/3/comments"), 200),
        (api.get("/repos/o/r/issues/9/comments"), 404),
        (anonymous.post("/repos/o/r/issues", json={"title": "x"}), 401),
        (anonymous.get("/repos/o/r/pulls/1", headers={"Authorization": "token wrong"}), 401),
    ]
    assert [r.status_code for r, _ in expect] == [status for _, status in expect]
    issues = api.get("/repos/o/r/issues", params={"state": "all"}).json()
    assert [(i["number"], "pull_request" in i) for i in issues] == [
        (3, False),
        (2, True),
        (1, True),
    ]
    assert [
        i["number"]
        for i in api.get(
            "/repos/o/r/issues", params={"labels": "nightly,bug", "state": "all"}
        ).json()
    ] == [3]
    assert github_double.pulls[("o/r", 2)].state == "closed"
    assert github_double.comments[("o/r", 3)][0].body == "fixed by #2"
    not_found = api.get("/repos/o/r/pulls/2000").json()
    assert not_found["message"] == "Not Found" and not_found["documentation_url"].startswith(
        "https://docs.github.com/"
    )
    github_double.set_rate_limit(0, int(time.time()) + 600)
    limited = api.get("/repos/o/r/pulls/1")
    assert limited.status_code == 403 and limited.json()["message"].startswith(
        "API rate limit exceeded for "
    )
    assert (
        limited.headers["X-RateLimit-Remaining"] == "0"
        and limited.headers["X-RateLimit-Resource"] == "core"
    )
    assert api.get("/rate_limit").status_code == 200  # costs nothing, works when spent
    assert_valid(github_double)
    covered = {(r.method, r.route, r.status) for r in github_double.requests}
    assert len(covered) >= 20


def test_the_schema_check_rejects_what_github_would_not_send(github_double: GitHubDouble) -> None:
    github_double.add_pull("o/r", 1, title="Fix", head_sha="a" * 40, base_sha="b" * 40)
    httpx.get(f"{github_double.api_url}/repos/o/r/pulls/1")
    served = github_double.requests[-1]
    assert openapi().errors(served) == []
    body = json.loads(served.body)
    del body["merged"]
    body["state"] = "merged"
    broken = LoggedRequest(
        served.method, served.path, {}, 200, False, False, json.dumps(body).encode(), served.route
    )
    problems = " ".join(openapi().errors(broken))
    assert "'merged' is a required property" in problems and "'merged' is not one of" in problems


def test_etags_pagination_and_rate_headers(github_double: GitHubDouble) -> None:
    github_double.add_pull(
        "o/r",
        1,
        title="Big",
        head_sha="a" * 40,
        base_sha="b" * 40,
        files=[f"f{i}.py" for i in range(250)],
    )
    api = httpx.Client(base_url=github_double.api_url)
    first = api.get("/repos/o/r/pulls/1/files", params={"per_page": 100})
    assert len(first.json()) == 100
    links = first.headers["Link"]
    assert (
        f'<{github_double.api_url}/repos/o/r/pulls/1/files?per_page=100&page=2>; rel="next"'
        in links
    )
    assert 'page=3>; rel="last"' in links
    last = api.get("/repos/o/r/pulls/1/files", params={"per_page": 100, "page": 3})
    assert [f["filename"] for f in last.json()] == [f"f{i}.py" for i in range(200, 250)]
    assert 'rel="prev"' in last.headers["Link"] and 'rel="next"' not in last.headers["Link"]
    pull = api.get("/repos/o/r/pulls/1")
    etag = pull.headers["ETag"]
    assert etag.startswith('W/"') and int(pull.headers["X-RateLimit-Used"]) == 3
    again = api.get("/repos/o/r/pulls/1", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert again.headers["X-RateLimit-Remaining"] == pull.headers["X-RateLimit-Remaining"]
    github_double.update_pull("o/r", 1, title="Bigger")
    assert api.get("/repos/o/r/pulls/1", headers={"If-None-Match": etag}).status_code == 200
    assert [r.conditional for r in github_double.requests] == [False, False, False, True, True]


# --- end to end ------------------------------------------------------------------------------

runner = CliRunner()


def sync_json(recipe: Path, out: Path) -> tuple[int, dict[str, Any], str]:
    local = ["--image-source", "engine"]  # the demo image is in the engine only
    result = runner.invoke(
        app, ["sync", "--recipe", str(recipe), "--out", str(out), "--json", *local]
    )
    return result.exit_code, json.loads(result.stdout), result.stdout + result.stderr


def test_sync_json_shows_githubs_titles_and_states_and_stores_no_token(
    github_double: GitHubDouble, demo: Demo, tmp_path: Path, private_cache: Path
) -> None:
    add_demo_pulls(github_double, demo.upstream)
    recipe = demo_recipe_on_github(demo, tmp_path / "recipe")
    code, doc, output = sync_json(recipe, tmp_path / "out")
    assert code == 0, doc
    patches = {p["pr"]: p for p in doc["patches"]}
    for number in DEMO_PRS:
        assert patches[number]["title"] == github_double.pulls[(REPOSITORY, number)].title
    assert patches[24294]["state"] == "upstream" and patches[24294]["via"] == "ancestry"
    assert [patches[n]["pr_state"] for n in DEMO_PRS] == ["merged", "merged", "merged", "open"]
    assert (
        github_double.count("GET", f"/repos/{REPOSITORY}/pulls/")
        == len(github_double.requests)
        == 8
    )
    token = github_double.token or ""
    assert token and all(r.authorized for r in github_double.requests)
    lock = (Path(doc["overlay"]) / "patchkeeper.lock.json").read_text()
    written = [
        p.read_bytes()
        for p in [*private_cache.rglob("*"), *(tmp_path / "out").rglob("*")]
        if p.is_file()
    ]
    assert token not in output and token not in lock
    assert not [data for data in written if token.encode() in data]


def test_sync_offline_asks_github_nothing(
    github_double: GitHubDouble, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_demo_pulls(github_double, demo.upstream)
    monkeypatch.setenv("PATCHKEEPER_OFFLINE", "1")
    code, doc, _ = sync_json(demo_recipe_on_github(demo, tmp_path / "recipe"), tmp_path / "out")
    assert code == 0
    assert {p["pr"]: p["title"] for p in doc["patches"]}[24294].endswith("(#24294)")
    assert github_double.requests == []
    # The same bytes keep their overlay directory whoever described the PRs.
    monkeypatch.delenv("PATCHKEEPER_OFFLINE")
    code, enriched, _ = sync_json(demo_recipe_on_github(demo, tmp_path / "r2"), tmp_path / "out")
    assert code == 0 and enriched["overlay_created"] is False
    assert enriched["overlay"] == doc["overlay"]
    assert enriched["patches"][0]["title"] != doc["patches"][0]["title"]
