"""A local stand-in for GitHub's REST API that speaks its wire format, for tests and benchmarks.

`GitHubDouble` serves, from memory, the endpoints patchkeeper and its nightly automation use:

  read   GET  /repos/{o}/{r}, /repos/{o}/{r}/pulls/{n}, /repos/{o}/{r}/pulls/{n}/files,
              /repos/{o}/{r}/pulls?state=&head=OWNER:BRANCH&base=, /repos/{o}/{r}/issues?state=&labels=,
              /repos/{o}/{r}/issues/{n}/comments, /rate_limit
  write  POST /repos/{o}/{r}/pulls (201), PATCH /repos/{o}/{r}/pulls/{n},
         POST /repos/{o}/{r}/issues (201), PATCH /repos/{o}/{r}/issues/{n},
         POST /repos/{o}/{r}/issues/{n}/comments (201)

as GitHub does: bodies shaped per GitHub's OpenAPI description (checked by `assert_valid`
against @octokit/openapi's api.github.com.json), `X-RateLimit-*` headers, weak `ETag`s and
`If-None-Match` -> 304 (empty, free of rate cost), `Link` pagination honouring
`per_page`/`page`, 403 "API rate limit exceeded for ..." once the budget is spent, on
demand a secondary rate limit (403 or 429 with `Retry-After`) or a 5xx "Server Error"
(`fail_next`), 404
`{"message": "Not Found", ...}`, 401 "Bad credentials" for a wrong token, 422 "Validation
Failed". Issues and pull requests share one number space per repository, and the issues list
includes pull requests (with a `pull_request` key), as on GitHub. Head branches a test has not
registered with `set_branch` get a SHA derived from their name.

Every request lands in `.requests` (method, path, query, status, conditional, authorized,
body), so tests and benchmarks count exactly what a client sent. The `github_double` fixture
starts one per test with a token, points GITHUB_API_URL / GITHUB_TOKEN at it, and validates
every response it served against the OpenAPI description when the test ends.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import json
import math
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from patchkeeper.demo.scenario import REPOSITORY, DemoUpstream
from patchkeeper.demo.setup import Demo
from tests.oci import BackgroundHTTPServer

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = f"{RATE_DOCS}#about-secondary-rate-limits"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:0000000:0000000:00000000."
)
CLIENT_ADDRESS = "127.0.0.1"
BOT_LOGIN = "patchkeeper-bot"  # who the token belongs to: the author of what it creates
ANONYMOUS_HINT = (
    "(But here's the good news: Authenticated requests get a higher rate limit. "
    "Check out the documentation for more details.)"
)
API_VERSION = "2022-11-28"
OPENAPI = (
    Path(__file__).resolve().parent.parent
    / ".tools/node_modules/@octokit/openapi/generated/api.github.com.json"
)

Json = dict[str, Any]


def iso(moment: float) -> str:
    """GitHub's timestamp format: UTC, seconds, a Z."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _fake_sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def _node_id(kind: str, number: int) -> str:
    return f"{kind}_" + base64.urlsafe_b64encode(f"{kind}{number:012d}".encode()).decode().rstrip(
        "="
    )


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangedFile:
    """One entry of a pull request's files list (GitHub's diff-entry)."""

    filename: str
    status: str = "modified"  # added, removed, modified, renamed, copied, changed, unchanged
    additions: int = 0
    deletions: int = 0
    previous_filename: str | None = None
    patch: str | None = None


@dataclass(kw_only=True)
class Comment:
    id: int
    body: str
    user: str
    created_at: str
    updated_at: str


@dataclass(kw_only=True)
class Issue:
    """An issue, or the issue side of a pull request (title, body, state, labels)."""

    repo: str
    number: int
    id: int
    title: str
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    labels: list[str] = field(default_factory=list)
    user: str = "upstream-dev"
    created_at: str
    updated_at: str
    closed_at: str | None = None


@dataclass(kw_only=True)
class Pull(Issue):
    """A pull request; `state` is GitHub's: open or closed (merged ones are closed)."""

    pull_id: int
    head_ref: str
    head_sha: str
    head_owner: str
    base_ref: str
    base_sha: str
    merged: bool = False
    merge_commit_sha: str | None = None
    merged_at: str | None = None
    draft: bool = False
    files: list[ChangedFile] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedRequest:
    """What the double answered, for counting and validation. `path` has no API prefix."""

    method: str
    path: str
    query: Mapping[str, str]
    status: int
    conditional: bool  # If-None-Match or If-Modified-Since was sent
    authorized: bool  # credentials were sent (right or wrong)
    body: bytes = b""
    route: str | None = None  # OpenAPI path template it matched, e.g. /repos/{owner}/{repo}


class _Answer(Exception):
    """Leave a handler early with this status and body (errors, mostly)."""

    def __init__(self, status: int, body: Json | None, headers: Mapping[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


def _error(status: int, message: str, docs: str = DOCS) -> _Answer:
    return _Answer(status, {"message": message, "documentation_url": docs, "status": str(status)})


def _invalid(resource: str, code: str, field_name: str = "", message: str = "") -> _Answer:
    entry = {"resource": resource, "code": code}
    if field_name:
        entry["field"] = field_name
    if message:
        entry["message"] = message
    return _Answer(
        422,
        {
            "message": "Validation Failed",
            "errors": [entry],
            "documentation_url": DOCS,
            "status": "422",
        },
    )


# --- the server ------------------------------------------------------------------------------

Handler = Callable[..., tuple[int, Any]]


class GitHubDouble(BackgroundHTTPServer):
    """GitHub's REST API for a few repositories, in memory. Use as a context manager.

    `token`: when set, a request carrying any other token gets 401 Bad credentials;
    requests without credentials are served anonymously (reads only). `prefix`: the API's
    path prefix, "/api/v3" for GitHub Enterprise Server. State (`repos`, `pulls`, `issues`,
    `comments`, `branches`) is plain data that tests may read; change it through the
    methods so `updated_at` and ETags move as on GitHub.
    """

    def __init__(
        self, *, token: str | None = None, prefix: str = "", rate_limit: int = 5000
    ) -> None:
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.repos: dict[str, Json] = {}  # full name -> {"id", "default_branch", ...}
        self.branches: dict[tuple[str, str], str] = {}  # (repo, branch) -> sha
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.issues: dict[tuple[str, int], Issue] = {}  # issues proper, pull requests not
        self.comments: dict[tuple[str, int], list[Comment]] = {}
        self.labels: dict[tuple[str, str], int] = {}  # (repo, name) -> label id
        self.requests: list[LoggedRequest] = []
        self.limit = rate_limit
        self.remaining = rate_limit
        self.reset = int(time.time()) + 3600
        self.rate_limited_status = 403
        self._failures: list[_Answer] = []  # answered, one each, before any route
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        super().__init__()
        self.web_url = f"http://{self.host}"
        self.api_url = f"{self.web_url}{self.prefix}"
        repo, pull, issue = (
            "/repos/{owner}/{repo}",
            "/pulls/{pull_number}",
            "/issues/{issue_number}",
        )
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/rate_limit", self._get_rate_limit),
            ("GET", repo, self._get_repo),
            ("GET", f"{repo}/pulls", self._list_pulls),
            ("POST", f"{repo}/pulls", self._create_pull),
            ("GET", f"{repo}{pull}", self._get_pull),
            ("PATCH", f"{repo}{pull}", self._edit_pull),
            ("GET", f"{repo}{pull}/files", self._list_files),
            ("GET", f"{repo}/issues", self._list_issues),
            ("POST", f"{repo}/issues", self._create_issue),
            ("PATCH", f"{repo}{issue}", self._edit_issue),
            ("GET", f"{repo}{issue}/comments", self._list_comments),
            ("POST", f"{repo}{issue}/comments", self._create_comment),
        ]
        self._routes = [(verb, *self._route(path), handler) for verb, path, handler in table]

    @staticmethod
    def _route(template: str) -> tuple[re.Pattern[str], str]:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        return re.compile(f"^{pattern}$"), template

    # --- setting the scene -------------------------------------------------------------------

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> Json:
        with self._lock:
            repo = {"id": next(self._ids), "default_branch": default_branch, "created_at": iso(0)}
            self.repos[full_name] = repo
            self.branches.setdefault((full_name, default_branch), _fake_sha(full_name, "main"))
            return repo

    def set_branch(self, repo: str, branch: str, sha: str) -> None:
        """Where `branch` points (PRs created from it get this head SHA)."""
        with self._lock:
            self.branches[(repo, branch)] = sha

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        title: str,
        state: str = "open",
        merged: bool = False,
        head_sha: str,
        base_sha: str,
        merge_commit_sha: str | None = None,
        merged_at: str | None = None,
        files: Sequence[ChangedFile | str] = (),
        head_ref: str | None = None,
        base_ref: str | None = None,
        body: str | None = None,
        user: str = "upstream-dev",
        created_at: str | None = None,
        draft: bool = False,
    ) -> Pull:
        """Register a pull request as it stands upstream (the repository is added if new)."""
        if merged and (state != "closed" or merged_at is None):
            raise ValueError("a merged pull request is closed and has merged_at")
        with self._lock:
            if repo not in self.repos:
                self.add_repo(repo)
            now = iso(time.time())
            created = created_at or merged_at or now
            pull = Pull(
                repo=repo,
                number=number,
                id=next(self._ids),
                pull_id=next(self._ids),
                title=title,
                body=body,
                state=state,
                user=user,
                created_at=created,
                updated_at=merged_at or created,
                closed_at=merged_at if merged else (now if state == "closed" else None),
                head_ref=head_ref or f"pr-{number}",
                head_sha=head_sha,
                head_owner=repo.split("/")[0],
                base_ref=base_ref or self.repos[repo]["default_branch"],
                base_sha=base_sha,
                merged=merged,
                merge_commit_sha=merge_commit_sha,
                merged_at=merged_at,
                draft=draft,
                files=[ChangedFile(f) if isinstance(f, str) else f for f in files],
            )
            self.pulls[(repo, number)] = pull
            return pull

    def update_pull(self, repo: str, number: int, **changes: Any) -> Pull:
        """Change a pull request upstream (a new push, a retitle, a merge): a new ETag."""
        with self._lock:
            pull = self.pulls[(repo, number)]
            for name, value in changes.items():
                if not hasattr(pull, name):
                    raise AttributeError(name)
                setattr(pull, name, value)
            pull.updated_at = iso(max(time.time(), _epoch(pull.updated_at) + 1))
            if pull.state == "open":
                pull.closed_at = None
            elif pull.closed_at is None:
                pull.closed_at = pull.merged_at or pull.updated_at
            return pull

    def set_rate_limit(self, remaining: int, reset: int | None = None, status: int = 403) -> None:
        """Budget left until `reset` (epoch seconds); once spent, answer `status` (403 or 429)."""
        with self._lock:
            self.remaining = remaining
            if reset is not None:
                self.reset = reset
            self.rate_limited_status = status

    def fail_next(self, times: int, status: int, *, retry_after: int | None = None) -> None:
        """Answer the next `times` requests with `status` as GitHub does: a 403 or 429 is a
        secondary rate limit (its message, and `Retry-After` seconds when given), a 5xx a
        "Server Error" (`Retry-After` too when given, as a 503 may carry)."""
        if status in (403, 429):
            body = {"message": SECONDARY_MESSAGE, "documentation_url": SECONDARY_DOCS}
        else:
            body = {"message": "Server Error", "documentation_url": DOCS, "status": str(status)}
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures += [_Answer(status, body, headers) for _ in range(times)]

    def count(self, method: str = "GET", path_prefix: str = "/") -> int:
        """Requests logged so far for `method` under `path_prefix`."""
        return sum(
            1 for r in self.requests if r.method == method and r.path.startswith(path_prefix)
        )

    # --- payloads ------------------------------------------------------------------------------

    def _user(self, login: str) -> Json:
        url = f"{self.api_url}/users/{login}"
        number = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        return {
            "login": login,
            "id": number,
            "node_id": _node_id("U", number),
            "avatar_url": f"{self.web_url}/avatars/u/{number}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.web_url}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User",
            "user_view_type": "public",
            "site_admin": False,
        }

    def _repository(self, full_name: str, *, full: bool = False) -> Json:
        repo = self.repos[full_name]
        owner, name = full_name.split("/")
        url = f"{self.api_url}/repos/{full_name}"
        open_count = sum(
            1
            for item in [*self.issues.values(), *self.pulls.values()]
            if item.repo == full_name and item.state == "open"
        )
        body: Json = {
            "id": repo["id"],
            "node_id": _node_id("R", repo["id"]),
            "name": name,
            "full_name": full_name,
            "private": False,
            "owner": self._user(owner),
            "html_url": f"{self.web_url}/{full_name}",
            "description": None,
            "fork": False,
            "url": url,
            "forks_url": f"{url}/forks",
            "keys_url": f"{url}/keys{{/key_id}}",
            "collaborators_url": f"{url}/collaborators{{/collaborator}}",
            "teams_url": f"{url}/teams",
            "hooks_url": f"{url}/hooks",
            "issue_events_url": f"{url}/issues/events{{/number}}",
            "events_url": f"{url}/events",
            "assignees_url": f"{url}/assignees{{/user}}",
            "branches_url": f"{url}/branches{{/branch}}",
            "tags_url": f"{url}/tags",
            "blobs_url": f"{url}/git/blobs{{/sha}}",
            "git_tags_url": f"{url}/git/tags{{/sha}}",
            "git_refs_url": f"{url}/git/refs{{/sha}}",
            "trees_url": f"{url}/git/trees{{/sha}}",
            "statuses_url": f"{url}/statuses/{{sha}}",
            "languages_url": f"{url}/languages",
            "stargazers_url": f"{url}/stargazers",
            "contributors_url": f"{url}/contributors",
            "subscribers_url": f"{url}/subscribers",
            "subscription_url": f"{url}/subscription",
            "commits_url": f"{url}/commits{{/sha}}",
            "git_commits_url": f"{url}/git/commits{{/sha}}",
            "comments_url": f"{url}/comments{{/number}}",
            "issue_comment_url": f"{url}/issues/comments{{/number}}",
            "contents_url": f"{url}/contents/{{+path}}",
            "compare_url": f"{url}/compare/{{base}}...{{head}}",
            "merges_url": f"{url}/merges",
            "archive_url": f"{url}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{url}/downloads",
            "issues_url": f"{url}/issues{{/number}}",
            "pulls_url": f"{url}/pulls{{/number}}",
            "milestones_url": f"{url}/milestones{{/number}}",
            "notifications_url": f"{url}/notifications{{?since,all,participating}}",
            "labels_url": f"{url}/labels{{/name}}",
            "releases_url": f"{url}/releases{{/id}}",
            "deployments_url": f"{url}/deployments",
            "created_at": repo["created_at"],
            "updated_at": repo["created_at"],
            "pushed_at": repo["created_at"],
            "git_url": f"git://{self.host}/{full_name}.git",
            "ssh_url": f"git@{self.host}:{full_name}.git",
            "clone_url": f"{self.web_url}/{full_name}.git",
            "svn_url": f"{self.web_url}/{full_name}",
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": "Python",
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": repo["default_branch"],
        }
        if full:
            body |= {"network_count": 0, "subscribers_count": 0}
        return body

    def _label(self, repo: str, name: str) -> Json:
        number = self.labels.setdefault((repo, name), next(self._ids))
        return {
            "id": number,
            "node_id": _node_id("LA", number),
            "url": f"{self.api_url}/repos/{repo}/labels/{name}",
            "name": name,
            "description": None,
            "color": hashlib.sha1(name.encode()).hexdigest()[:6],
            "default": False,
        }

    def _pull_urls(self, pull: Pull) -> Json:
        repo_url = f"{self.api_url}/repos/{pull.repo}"
        html = f"{self.web_url}/{pull.repo}/pull/{pull.number}"
        return {
            "url": f"{repo_url}/pulls/{pull.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
        }

    def _issue(self, item: Issue) -> Json:
        """GitHub's issue object; a pull request's carries a `pull_request` key."""
        repo_url = f"{self.api_url}/repos/{item.repo}"
        url = f"{repo_url}/issues/{item.number}"
        kind = "/pull/" if isinstance(item, Pull) else "/issues/"
        body: Json = {
            "url": url,
            "repository_url": repo_url,
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{self.web_url}/{item.repo}{kind}{item.number}",
            "id": item.id,
            "node_id": _node_id("I", item.id),
            "number": item.number,
            "title": item.title,
            "user": self._user(item.user),
            "labels": [self._label(item.repo, name) for name in item.labels],
            "state": item.state,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self.comments.get((item.repo, item.number), [])),
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "closed_at": item.closed_at,
            "author_association": "CONTRIBUTOR",
            "active_lock_reason": None,
            "body": item.body,
            "closed_by": None,
            "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None,
        }
        if item.state_reason:  # GitHub sends null, which the description's enum does not allow
            body["state_reason"] = item.state_reason
        if isinstance(item, Pull):
            body["draft"] = item.draft
            body["pull_request"] = {**self._pull_urls(item), "merged_at": item.merged_at}
        return body

    def _pull(self, pull: Pull, *, simple: bool = False) -> Json:
        """GitHub's pull-request object (or, for lists, pull-request-simple)."""
        urls = self._pull_urls(pull)
        repo_url = f"{self.api_url}/repos/{pull.repo}"
        issue_url = f"{repo_url}/issues/{pull.number}"

        def side(ref: str, sha: str, owner: str) -> Json:
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user(owner),
                "repo": self._repository(pull.repo),
            }

        links = {
            "self": urls["url"],
            "html": urls["html_url"],
            "issue": issue_url,
            "comments": f"{issue_url}/comments",
            "review_comments": f"{urls['url']}/comments",
            "review_comment": f"{repo_url}/pulls/comments{{/number}}",
            "commits": f"{urls['url']}/commits",
            "statuses": f"{repo_url}/statuses/{pull.head_sha}",
        }
        body: Json = {
            **urls,
            "id": pull.pull_id,
            "node_id": _node_id("PR", pull.pull_id),
            "issue_url": issue_url,
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self._user(pull.user),
            "body": pull.body,
            "labels": [self._label(pull.repo, name) for name in pull.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": side(pull.head_ref, pull.head_sha, pull.head_owner),
            "base": side(pull.base_ref, pull.base_sha, pull.repo.split("/")[0]),
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": "CONTRIBUTOR",
            "auto_merge": None,
            "draft": pull.draft,
        }
        if simple:
            return body
        comments = len(self.comments.get((pull.repo, pull.number), []))
        return body | {
            "merged": pull.merged,
            "mergeable": None if pull.state == "closed" else True,
            "rebaseable": None if pull.state == "closed" else True,
            "mergeable_state": "unknown" if pull.state == "closed" else "clean",
            "merged_by": self._user(pull.head_owner) if pull.merged else None,
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": sum(f.additions for f in pull.files),
            "deletions": sum(f.deletions for f in pull.files),
            "changed_files": len(pull.files),
        }

    def _diff_entry(self, pull: Pull, entry: ChangedFile) -> Json:
        sha = pull.head_sha
        body: Json = {
            "sha": None if entry.status == "removed" else _fake_sha(sha, entry.filename),
            "filename": entry.filename,
            "status": entry.status,
            "additions": entry.additions,
            "deletions": entry.deletions,
            "changes": entry.additions + entry.deletions,
            "blob_url": f"{self.web_url}/{pull.repo}/blob/{sha}/{entry.filename}",
            "raw_url": f"{self.web_url}/{pull.repo}/raw/{sha}/{entry.filename}",
            "contents_url": f"{self.api_url}/repos/{pull.repo}/contents/{entry.filename}?ref={sha}",
        }
        if entry.patch is not None:
            body["patch"] = entry.patch
        if entry.previous_filename is not None:
            body["previous_filename"] = entry.previous_filename
        return body

    def _comment(self, repo: str, number: int, comment: Comment) -> Json:
        issue_url = f"{self.api_url}/repos/{repo}/issues/{number}"
        return {
            "id": comment.id,
            "node_id": _node_id("IC", comment.id),
            "url": f"{self.api_url}/repos/{repo}/issues/comments/{comment.id}",
            "html_url": f"{self.web_url}/{repo}/issues/{number}#issuecomment-{comment.id}",
            "issue_url": issue_url,
            "body": comment.body,
            "user": self._user(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": "MEMBER",
            "performed_via_github_app": None,
        }

    def _rate(self) -> Json:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset": self.reset,
            "used": self.limit - self.remaining,
            "resource": "core",
        }

    # --- request handling ----------------------------------------------------------------------

    def _repo_of(self, params: Mapping[str, str]) -> str:
        name = f"{params['owner']}/{params['repo']}"
        if name not in self.repos:
            raise _error(404, "Not Found", f"{DOCS}/repos/repos#get-a-repository")
        return name

    def _pull_of(self, params: Mapping[str, str]) -> Pull:
        repo = self._repo_of(params)
        pull = self.pulls.get((repo, int(params["pull_number"])))
        if pull is None:
            raise _error(404, "Not Found", f"{DOCS}/pulls/pulls#get-a-pull-request")
        return pull

    def _item_of(self, params: Mapping[str, str]) -> Issue:
        repo = self._repo_of(params)
        key = (repo, int(params["issue_number"]))
        item = self.issues.get(key) or self.pulls.get(key)
        if item is None:
            raise _error(404, "Not Found", f"{DOCS}/issues/issues#get-an-issue")
        return item

    def _next_number(self, repo: str) -> int:
        taken = [n for r, n in [*self.issues, *self.pulls] if r == repo]
        return max(taken, default=0) + 1

    def _get_rate_limit(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        rate = self._rate()
        other = {"limit": 30, "remaining": 30, "reset": self.reset, "used": 0}
        return 200, {
            "resources": {"core": rate, "search": other, "graphql": dict(other, limit=5000)},
            "rate": rate,
        }

    def _get_repo(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        return 200, self._repository(self._repo_of(params), full=True)

    def _get_pull(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        return 200, self._pull(self._pull_of(params))

    def _list_files(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        pull = self._pull_of(params)
        return 200, [self._diff_entry(pull, entry) for entry in pull.files]

    def _list_pulls(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        repo = self._repo_of(params)
        state = query.get("state", "open")
        head, base = query.get("head"), query.get("base")
        found = [
            p
            for (r, _), p in self.pulls.items()
            if r == repo
            and state in ("all", p.state)
            and (head is None or head in (f"{p.head_owner}:{p.head_ref}", p.head_ref))
            and (base is None or base == p.base_ref)
        ]
        found.sort(key=lambda p: p.number, reverse=query.get("direction", "desc") == "desc")
        return 200, [self._pull(p, simple=True) for p in found]

    def _list_issues(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        repo = self._repo_of(params)
        state = query.get("state", "open")
        wanted = {name for name in query.get("labels", "").split(",") if name}
        items: list[Issue] = [
            item
            for item in [*self.issues.values(), *self.pulls.values()]
            if item.repo == repo and state in ("all", item.state) and wanted <= set(item.labels)
        ]
        items.sort(key=lambda item: item.number, reverse=query.get("direction", "desc") == "desc")
        return 200, [self._issue(item) for item in items]

    def _list_comments(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        item = self._item_of(params)
        found = self.comments.get((item.repo, item.number), [])
        return 200, [self._comment(item.repo, item.number, c) for c in found]

    def _create_pull(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        repo = self._repo_of(params)
        for name in ("head", "base"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise _invalid("PullRequest", "missing_field", name)
        if not isinstance(body.get("title"), str) or not body["title"]:
            raise _invalid("PullRequest", "missing_field", "title")
        owner, _, ref = str(body["head"]).rpartition(":")
        owner = owner or repo.split("/")[0]
        base = str(body["base"])
        if (repo, base) not in self.branches:
            raise _invalid("PullRequest", "invalid", "base")
        if ref == base and owner == repo.split("/")[0]:
            raise _invalid("PullRequest", "custom", message=f"No commits between {base} and {ref}")
        for p in self.pulls.values():
            if (
                p.repo == repo
                and p.state == "open"
                and (p.head_owner, p.head_ref, p.base_ref)
                == (
                    owner,
                    ref,
                    base,
                )
            ):
                raise _invalid(
                    "PullRequest",
                    "custom",
                    message=f"A pull request already exists for {owner}:{ref}.",
                )
        number = self._next_number(repo)
        pull = self.add_pull(
            repo,
            number,
            title=str(body["title"]),
            body=body.get("body"),
            head_sha=self.branches.get((repo, ref)) or _fake_sha(repo, ref),
            base_sha=self.branches[(repo, base)],
            head_ref=ref,
            base_ref=base,
            user=BOT_LOGIN,
            created_at=iso(time.time()),
            draft=bool(body.get("draft", False)),
        )
        pull.head_owner = owner
        return 201, self._pull(pull)

    def _edit_pull(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        pull = self._pull_of(params)
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _invalid("PullRequest", "invalid", "state")
        if state == "open" and pull.merged:
            raise _invalid("PullRequest", "custom", message="Cannot reopen a merged pull request")
        self._edit(pull, body)
        return 200, self._pull(pull)

    def _create_issue(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        repo = self._repo_of(params)
        if not isinstance(body.get("title"), (str, int)) or body["title"] == "":
            raise _invalid("Issue", "missing_field", "title")
        now = iso(time.time())
        number = self._next_number(repo)
        issue = Issue(
            repo=repo,
            number=number,
            id=next(self._ids),
            title=str(body["title"]),
            body=body.get("body"),
            labels=self._label_names(body.get("labels", [])),
            user=BOT_LOGIN,
            created_at=now,
            updated_at=now,
        )
        self.issues[(repo, number)] = issue
        return 201, self._issue(issue)

    def _edit_issue(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        item = self._item_of(params)
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _invalid("Issue", "invalid", "state")
        if state == "open" and isinstance(item, Pull) and item.merged:
            raise _invalid("Issue", "custom", message="Cannot reopen a merged pull request")
        self._edit(item, body)
        return 200, self._issue(item)

    def _create_comment(
        self, params: Mapping[str, str], query: Mapping[str, str], body: Json
    ) -> tuple[int, Any]:
        item = self._item_of(params)
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise _invalid("IssueComment", "missing_field", "body")
        now = iso(time.time())
        comment = Comment(
            id=next(self._ids),
            body=body["body"],
            user=BOT_LOGIN,
            created_at=now,
            updated_at=now,
        )
        self.comments.setdefault((item.repo, item.number), []).append(comment)
        item.updated_at = now
        return 201, self._comment(item.repo, item.number, comment)

    def _label_names(self, labels: Any) -> list[str]:
        if not isinstance(labels, list):
            raise _invalid("Issue", "invalid", "labels")
        names = [label["name"] if isinstance(label, dict) else label for label in labels]
        if not all(isinstance(name, str) and name for name in names):
            raise _invalid("Label", "invalid", "name")
        return list(dict.fromkeys(names))

    def _edit(self, item: Issue, body: Json) -> None:
        """Title, body, state (with closed_at and state_reason) and labels, as both PATCHes do."""
        now = iso(time.time())
        if "title" in body:
            item.title = str(body["title"])
        if "body" in body:
            item.body = body["body"]
        if "labels" in body:
            item.labels = self._label_names(body["labels"])
        state = body.get("state")
        if state is not None and state != item.state:
            item.state = state
            item.closed_at = now if state == "closed" else None
            item.state_reason = body.get("state_reason") or (
                "completed" if state == "closed" else "reopened"
            )
        item.updated_at = now

    # --- HTTP -----------------------------------------------------------------------------------

    def _headers(self, authorized: bool) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": API_VERSION,
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Used": str(self.limit - self.remaining),
            "X-RateLimit-Resource": "core",
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding",
            "Cache-Control": f"{'private' if authorized else 'public'}, max-age=60, s-maxage=60",
        }

    def _credentials(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("token", "bearer"):
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value).decode().partition(":")[2]
            except ValueError:
                return ""
        return ""

    def answer(
        self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One request in, (status, headers, body) out, and logged: the HTTP handler's core."""
        split = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        inside = split.path == self.prefix or split.path.startswith(self.prefix + "/")
        path = split.path[len(self.prefix) :] if inside else split.path
        token = self._credentials(headers.get("Authorization"))
        conditional = bool(headers.get("If-None-Match") or headers.get("If-Modified-Since"))
        with self._lock:
            route, free = None, True  # free: costs no rate limit (401, 304, rate-limited)
            extra: dict[str, str] = {}
            try:
                if self._failures:
                    raise self._failures.pop(0)
                if self.token is not None and token is not None and token != self.token:
                    raise _error(401, "Bad credentials")
                if time.time() >= self.reset:
                    self.remaining, self.reset = self.limit, int(time.time()) + 3600
                if path != "/rate_limit" and self.remaining <= 0:
                    raise self._rate_limited(token is not None)
                free = path == "/rate_limit"
                handler, params, route = self._dispatch(method, path if inside else None)
                if method != "GET" and token is None:
                    raise _error(401, "Requires authentication")
                status, payload = handler(params, query, self._json(raw_body))
                if isinstance(payload, list):
                    payload, link = self._page(payload, split.path, query)
                    extra = {"Link": link} if link else {}
            except _Answer as stop:
                status, payload, extra = stop.status, stop.body, stop.headers
            data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
            if method == "GET" and status == 200:
                extra["ETag"] = f'W/"{hashlib.sha256(data).hexdigest()}"'
                modified = payload.get("updated_at") if isinstance(payload, dict) else None
                if modified:
                    extra["Last-Modified"] = email.utils.formatdate(_epoch(modified), usegmt=True)
                if self._not_modified(headers, extra["ETag"], modified):
                    status, data, free = 304, b"", True
            if not free:
                self.remaining -= 1
            response = {**self._headers(token is not None), **extra}
            if status == 201 and isinstance(payload, dict):
                response["Location"] = payload["url"]
            self.requests.append(
                LoggedRequest(
                    method, path, query, status, conditional, token is not None, data, route
                )
            )
        return status, response, data

    def _dispatch(self, method: str, path: str | None) -> tuple[Handler, dict[str, str], str]:
        for verb, pattern, template, handler in self._routes:
            match = pattern.match(path) if path is not None else None
            if match and verb == method:
                return handler, match.groupdict(), template
        raise _error(404, "Not Found")

    def _rate_limited(self, authenticated: bool) -> _Answer:
        who = "user ID 1." if authenticated else f"{CLIENT_ADDRESS}. {ANONYMOUS_HINT}"
        message = f"API rate limit exceeded for {who}"
        return _Answer(
            self.rate_limited_status, {"message": message, "documentation_url": RATE_DOCS}
        )

    @staticmethod
    def _json(raw: bytes) -> Json:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Answer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
        return body

    @staticmethod
    def _not_modified(headers: Mapping[str, str], etag: str, modified: str | None) -> bool:
        """RFC 9110: If-None-Match wins over If-Modified-Since; ETags compare weakly."""
        wanted = headers.get("If-None-Match")
        if wanted:
            tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
            return "*" in tags or etag.removeprefix("W/") in tags
        since = headers.get("If-Modified-Since")
        if since and modified:
            try:
                return _epoch(modified) <= email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _page(self, items: list[Any], path: str, query: Mapping[str, str]) -> tuple[list[Any], str]:
        """Slice a list by per_page/page and build GitHub's Link header (none for one page)."""
        try:
            per_page = min(max(int(query.get("per_page", 30)), 1), 100)
            page = max(int(query.get("page", 1)), 1)
        except ValueError:
            raise _invalid("Pagination", "invalid", "per_page") from None
        last = max(math.ceil(len(items) / per_page), 1)

        def link(number: int, rel: str) -> str:
            params = urlencode({**query, "per_page": per_page, "page": number})
            return f'<{self.web_url}{path}?{params}>; rel="{rel}"'

        rels = []
        if page > 1:
            rels += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            rels += [link(page + 1, "next"), link(last, "last")]
        return items[(page - 1) * per_page : page * per_page], ", ".join(rels)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, data = double.answer(self.command, self.path, self.headers, raw)
                self.send_response(status)
                for name, value in headers.items():
                    if status != 304 or name != "Content-Type":
                        self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- the demo scenario's pull requests -------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def files_between(repo: Path, old: str, new: str) -> list[ChangedFile]:
    """GitHub's files list for the change old..new, from git (statuses and line counts)."""
    statuses = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied"}
    counts = {}
    for line in _git(repo, "diff", "--numstat", "--find-renames", old, new).splitlines():
        added, removed, name = line.split("\t", 2)
        counts[name.split("\t")[-1]] = (int(added), int(removed))  # binary: "-" never occurs here
    found = []
    for line in _git(repo, "diff", "--name-status", "--find-renames", old, new).splitlines():
        code, *names = line.split("\t")
        additions, deletions = counts[names[-1]]
        found.append(
            ChangedFile(
                names[-1],
                statuses[code[0]],
                additions,
                deletions,
                previous_filename=names[0] if len(names) == 2 else None,
            )
        )
    return found


def add_demo_pulls(double: GitHubDouble, upstream: DemoUpstream, repo: str = REPOSITORY) -> None:
    """The demo's four PRs as GitHub shows them, every SHA from the demo's own git history:
    #24294 and #26773 squash-merged, #28906 merged with a merge commit, #25876 open (its
    merge_commit_sha is the test merge, as GitHub reports for open PRs)."""
    history = upstream.history
    landed = {}
    for line in _git(
        history.path, "log", "--first-parent", "--format=%H %ct %s", "main"
    ).splitlines():
        sha, stamp, subject = line.split(" ", 2)
        found = re.search(r"\(#(\d+)\)$", subject) or re.match(
            r"Merge pull request #(\d+)", subject
        )
        if found:
            landed[int(found[1])] = (sha, iso(int(stamp)))
    double.add_repo(repo)
    double.set_branch(repo, "main", history.head("main"))
    for number, head in history.pulls.items():
        title = _git(history.path, "log", "-1", "--format=%s", head)
        created = iso(int(_git(history.path, "log", "-1", "--format=%ct", head)))
        if number in landed:
            merge, merged_at = landed[number]
            double.add_pull(
                repo,
                number,
                title=title,
                state="closed",
                merged=True,
                head_sha=head,
                base_sha=_git(history.path, "rev-parse", f"{merge}^1"),
                merge_commit_sha=merge,
                merged_at=merged_at,
                created_at=created,
                files=files_between(history.path, f"{merge}^1", merge),
            )
        else:
            base = _git(history.path, "merge-base", "main", head)
            double.add_pull(
                repo,
                number,
                title=title,
                state="open",
                head_sha=head,
                base_sha=history.head("main"),
                merge_commit_sha=history.merge_refs.get(number),
                created_at=created,
                files=files_between(history.path, base, head),
            )


def demo_recipe_on_github(demo: Demo, workdir: Path, repo: str = REPOSITORY) -> Path:
    """A copy of the demo recipe whose patchset also names `github: repo` (its `git:` stays
    the clone URL), so sync asks the API, i.e. the double, about its PRs."""
    workdir.mkdir(parents=True)
    recipe = workdir / demo.recipe.name
    shutil.copy(demo.recipe, recipe)
    patchset = (demo.recipe.parent / "sglang-demo.yaml").read_text()
    (workdir / "sglang-demo.yaml").write_text(
        patchset.replace("upstream:\n", f"upstream:\n  github: {repo}\n", 1)
    )
    return recipe


# --- checking responses against GitHub's OpenAPI description ---------------------------------


class OpenAPIResponses:
    """Validates logged responses against the operation's schema for their status code.

    Statuses an operation does not document (a 404 or rate-limited 403 on GET a pull request,
    401s) are checked against `basic-error`, the schema every documented error shares.
    """

    def __init__(self, spec_path: Path = OPENAPI) -> None:
        if not spec_path.exists():
            pytest.fail(f"{spec_path} is missing: run scripts/setup (npm @octokit/openapi)")
        self.spec = json.loads(spec_path.read_bytes())
        self._registry = Registry().with_resource(
            "urn:github", Resource.from_contents(self.spec, default_specification=DRAFT4)
        )
        self._validators: dict[str, Any] = {}

    def _validator(self, pointer: str) -> Any:
        if pointer not in self._validators:
            self._validators[pointer] = OAS30ReadValidator(
                {"$ref": f"urn:github#{pointer}"},
                registry=self._registry,
                format_checker=oas30_format_checker,
            )
        return self._validators[pointer]

    def schema_pointer(self, method: str, route: str | None, status: int) -> str | None:
        """JSON pointer of the body schema, or None when the status has no body (304)."""
        if status == 304:
            return None
        operation = self.spec["paths"].get(route or "", {}).get(method.lower(), {})
        response = operation.get("responses", {}).get(str(status))
        if response is None:
            if status < 400:
                raise AssertionError(f"{method} {route}: {status} is not a documented answer")
            return "/components/schemas/basic-error"
        pointer = f"/paths/{_escape(route or '')}/{method.lower()}/responses/{status}"
        if "$ref" in response:
            pointer = response["$ref"].removeprefix("#")
            response = self._resolve(pointer)
        if "application/json" not in response.get("content", {}):
            return None
        return f"{pointer}/content/application~1json/schema"

    def _resolve(self, pointer: str) -> Json:
        node: Any = self.spec
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return dict(node)

    def errors(self, logged: LoggedRequest) -> list[str]:
        where = f"{logged.method} {logged.path} -> {logged.status}"
        pointer = self.schema_pointer(logged.method, logged.route, logged.status)
        if pointer is None:
            return [f"{where}: body must be empty"] if logged.body else []
        body = json.loads(logged.body)
        return [
            f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in self._validator(pointer).iter_errors(body)
        ]


def _escape(route: str) -> str:
    return route.replace("~", "~0").replace("/", "~1")


@cache
def openapi() -> OpenAPIResponses:
    """Loaded once per session: the description is 13 MB."""
    return OpenAPIResponses()


def assert_valid(double: GitHubDouble) -> None:
    """Every response `double` served so far matches GitHub's published schemas."""
    problems = [problem for logged in double.requests for problem in openapi().errors(logged)]
    assert not problems, "\n".join(problems[:20])


# --- fixture ---------------------------------------------------------------------------------


@pytest.fixture
def github_double(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubDouble]:
    """A `GitHubDouble` with a token (shaped like a classic 40-hex OAuth token, which
    `errors.redact` does not recognise) that GITHUB_API_URL and GITHUB_TOKEN point at.
    Every response it served is validated against the OpenAPI description afterwards."""
    with GitHubDouble(token=secrets.token_hex(20)) as double:
        monkeypatch.setenv("GITHUB_API_URL", double.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", double.token or "")
        monkeypatch.delenv("GH_TOKEN", raising=False)
        monkeypatch.delenv("PATCHKEEPER_OFFLINE", raising=False)
        yield double
        assert_valid(double)
