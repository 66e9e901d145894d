"""Enrich git's answers with GitHub's: PR titles and states, merge SHAs, merge times, files.

Git alone cannot tell an open PR that no longer merges cleanly from a closed one, and knows
a title only as a commit subject. GitHub's REST API knows, at the price of requests against
a rate limit, so answers are cached on disk: a merged PR never changes (0 requests once
cached); any other is revalidated with its ETag (one 304, which costs no rate limit). Diffs
and ancestry still come from git, so an unreachable API only costs the enrichment.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from filelock import FileLock
from github import Auth, Github, GithubException, GithubRetry
from github.GithubException import (
    BadCredentialsException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.PullRequest import PullRequest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from rich.markup import escape
from urllib3.exceptions import InvalidHeader
from urllib3.response import BaseHTTPResponse, HTTPResponse
from urllib3.util.retry import Retry

from patchkeeper import __version__
from patchkeeper.config.models import Patch
from patchkeeper.errors import ConfigError, UnreachableError, UpstreamError, redact
from patchkeeper.paths import atomic_write, cache_dir
from patchkeeper.ui import err_console
from patchkeeper.upstream.git_resolver import GitResolver
from patchkeeper.upstream.model import PrState, UpstreamBlob, UpstreamChange, UpstreamResolver

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")
MAX_WAIT_VARIABLE = "PATCHKEEPER_GITHUB_MAX_WAIT"
OFFLINE_VARIABLE = "PATCHKEEPER_OFFLINE"
DEFAULT_MAX_WAIT_S = 60.0
CACHE_FORMAT = 1

Json = dict[str, Any]


def offline() -> bool:
    """`PATCHKEEPER_OFFLINE=1`: resolve from git alone, never ask the API."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class GitHubSettings:
    """Where the API is and how to use it, from the environment GitHub Actions sets."""

    api_url: str = DEFAULT_API_URL
    token: str | None = field(default=None, repr=False)
    token_source: str | None = None  # the variable it came from, for messages
    max_wait: float = DEFAULT_MAX_WAIT_S

    @classmethod
    def from_env(cls) -> GitHubSettings:
        source = next((name for name in TOKEN_VARIABLES if os.environ.get(name, "").strip()), None)
        raw_wait = os.environ.get(MAX_WAIT_VARIABLE, "").strip()
        try:
            max_wait = float(raw_wait) if raw_wait else DEFAULT_MAX_WAIT_S
        except ValueError:
            max_wait = math.nan
        if not 0 <= max_wait < math.inf:
            raise ConfigError(f"{MAX_WAIT_VARIABLE}={raw_wait!r}: give seconds (>= 0)")
        api_url = os.environ.get("GITHUB_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
        if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).hostname:
            raise ConfigError(f"GITHUB_API_URL={redact(api_url)!r} is not an http(s) URL")
        token = os.environ[source].strip() if source else None
        return cls(api_url, token, source, max_wait)


@dataclass(frozen=True)
class PullInfo:
    """What GitHub says about one pull request, in the terms patchkeeper uses."""

    number: int
    title: str
    state: str  # open or closed: GitHub's word (merged PRs are closed and merged)
    merged: bool
    merge_commit_sha: str | None
    merged_at: str | None
    head_sha: str
    files: tuple[str, ...]

    @classmethod
    def of(cls, pull: PullReply, files: Sequence[FileReply]) -> PullInfo:
        return cls(
            number=pull.number,
            title=pull.title,
            state=pull.state,
            merged=pull.merged,
            merge_commit_sha=pull.merge_commit_sha,
            merged_at=pull.merged_at,
            head_sha=pull.head.sha,
            files=tuple(entry.filename for entry in files),
        )


class _Reply(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)  # extra keys: GitHub's to add


class _Head(_Reply):
    sha: str


class PullReply(_Reply):
    """What patchkeeper reads of GitHub's pull-request object, its shape checked."""

    number: int
    title: str
    state: Literal["open", "closed"]
    merged: bool = False
    merge_commit_sha: str | None = None
    merged_at: str | None = None
    head: _Head
    changed_files: int = 0


class FileReply(_Reply):
    """One entry of a pull request's files list."""

    filename: str


FILES = TypeAdapter(list[FileReply])


def _shape_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the reply"
    return f"{where}: {first['msg']}"


# --- rate limits -----------------------------------------------------------------------------


def _reset_time(headers: Mapping[str, Any] | None) -> datetime | None:
    """X-RateLimit-Reset (epoch seconds) as a UTC time, whatever the header's case."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-ratelimit-reset" and str(value).isdigit():
            return datetime.fromtimestamp(int(value), UTC)
    return None


class _RateLimitRetry(GithubRetry):
    """GithubRetry waits out 403 rate limits up to `max_rate_limit_wait`; GitHub may answer a
    spent budget with 429 as well, with the same X-RateLimit-Reset, so wait for that too.
    A `Retry-After` (secondary rate limits, a 503) is never slept beyond the maximum either:
    a longer one fails at once, an unreadable one falls back to the ordinary backoff."""

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        asked = self.get_retry_after(response) if response is not None else None
        if response is not None and asked is not None and self._too_long(asked):
            headers = dict(response.headers.items())
            raise RateLimitExceededExceedsMaxWait(response.status, None, headers, wait=asked)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is None or response.status != 429 or "Retry-After" in response.headers:
            return retry
        reset = _reset_time(response.headers)
        wait = max(reset.timestamp() - time.time(), 0.0) + 1 if reset else self.secondary_rate_wait
        if self._too_long(wait):
            raise RateLimitExceededExceedsMaxWait(
                429, None, dict(response.headers.items()), wait=wait
            )
        retry.get_backoff_time = lambda: wait  # type: ignore[method-assign]
        return retry

    def _too_long(self, wait: float) -> bool:
        return self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait


def rate_limit_message(
    where: str, headers: Mapping[str, Any] | None, settings: GitHubSettings
) -> str:
    """Why a rate-limited request was given up: GitHub's `Retry-After` or reset time, and
    the maximum wait it exceeds."""
    retry_after = next(
        (str(v) for k, v in (headers or {}).items() if k.lower() == "retry-after"), None
    )
    limit = f"{MAX_WAIT_VARIABLE}={settings.max_wait:g} s allows"
    if retry_after is not None:
        return f"{where}: GitHub asks to wait {retry_after} s (Retry-After), longer than {limit}"
    reset = _reset_time(headers)
    when = reset.strftime("%Y-%m-%dT%H:%M:%SZ") if reset else "an unknown time"
    hint = "" if settings.token else "; set GITHUB_TOKEN for a higher limit"
    return f"{where}: GitHub API rate limit exhausted until {when} (UTC), longer than {limit}{hint}"


# --- the cache -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedPull:
    """A pull request as last fetched: raw JSON, the validators to revalidate it, its files."""

    pull: Json
    files: list[Json]
    etag: str | None
    last_modified: str | None

    @property
    def headers(self) -> dict[str, str | int]:
        """Just the response headers PyGithub's conditional `update()` reads."""
        found = {"etag": self.etag, "last-modified": self.last_modified}
        return {name: value for name, value in found.items() if value}


def _from_cache(entry: CachedPull) -> PullInfo | None:
    """A cached pull request, or None when the entry's shape is wrong (fetched afresh)."""
    try:
        return PullInfo.of(PullReply.model_validate(entry.pull), FILES.validate_python(entry.files))
    except ValidationError:
        return None


class PullCache:
    """JSON files under cache_dir()/github/<api host>/<owner>/<repo>/pulls/<n>.json."""

    def __init__(self, api_url: str, repo: str) -> None:
        parts = urlsplit(api_url)
        host = parts.hostname or "unknown"
        host += f"-{parts.port}" if parts.port else ""
        self.root = cache_dir() / "github" / host / repo / "pulls"

    def _path(self, number: int) -> Path:
        return self.root / f"{number}.json"

    @contextmanager
    def locked(self, number: int) -> Iterator[None]:
        """One process at a time per PR, so concurrent syncs do not both spend requests."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self._path(number)) + ".lock"):
            yield

    def load(self, number: int) -> CachedPull | None:
        try:
            doc = json.loads(self._path(number).read_bytes())
            if doc.get("format") != CACHE_FORMAT:
                return None
            return CachedPull(doc["pull"], doc["files"], doc["etag"], doc["last_modified"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # absent or damaged: fetch afresh

    def store(self, number: int, entry: CachedPull) -> None:
        doc = {
            "format": CACHE_FORMAT,
            "etag": entry.etag,
            "last_modified": entry.last_modified,
            "pull": entry.pull,
            "files": entry.files,
        }
        atomic_write(self._path(number), json.dumps(doc, sort_keys=True).encode())


# --- the API ---------------------------------------------------------------------------------


class _ApiDown(Exception):
    """The API cannot be reached (connection, timeout, 5xx after retries)."""


def client(settings: GitHubSettings, **options: Any) -> Github:
    """A lazy PyGithub client that waits out rate limits (up to `max_wait`) and retries 5xx."""
    retry = _RateLimitRetry(
        total=3,
        connect=1,
        read=1,
        backoff_factor=0.5,
        max_rate_limit_wait=settings.max_wait,
        status_forcelist=[429, 500, 502, 503, 504],
    )
    return Github(
        auth=Auth.Token(settings.token) if settings.token else None,
        base_url=settings.api_url,
        per_page=100,
        retry=retry,
        timeout=20,
        lazy=True,
        user_agent=f"patchkeeper/{__version__}",
        api_version=API_VERSION,
        **options,
    )


class GitHubPulls:
    """One repository's pull requests through PyGithub, cached: at most 2 requests per PR cold
    (the PR, its files at 100 a page), 0 for a cached merged PR, 1 conditional otherwise."""

    def __init__(self, repo: str, settings: GitHubSettings) -> None:
        self.repo = repo
        self.settings = settings
        self._github = client(settings, seconds_between_requests=None)
        self._repository = self._github.get_repo(repo)  # lazy: no request
        self.cache = PullCache(settings.api_url, repo)

    def get(self, number: int) -> PullInfo:
        with self._errors(number), self.cache.locked(number):
            cached = self.cache.load(number)
            known = _from_cache(cached) if cached is not None else None
            if cached is not None and known is not None:
                pull = self._github.create_from_raw_data(PullRequest, cached.pull, cached.headers)
                if known.merged or not pull.update():
                    log.info("GitHub %s#%d: cache hit", self.repo, number)
                    return known
            else:
                log.info("GitHub %s#%d: not cached; fetching", self.repo, number)
                pull = self._repository.get_pull(number).complete()
            try:
                reply = PullReply.model_validate(pull.raw_data)
                raw = [entry.raw_data for entry in pull.get_files()] if reply.changed_files else []
                files = FILES.validate_python(raw)
            except ValidationError as err:  # enrichment is optional: git still answers
                where = self._where(number)
                raise _ApiDown(f"{where}: unexpected reply: {_shape_error(err)}") from None
            self.cache.store(number, CachedPull(pull.raw_data, raw, pull.etag, pull.last_modified))
            return PullInfo.of(reply, files)

    def _where(self, number: int) -> str:
        return f"PR #{number} of {self.repo} on {redact(self.settings.api_url)}"

    @contextmanager
    def _errors(self, number: int) -> Iterator[None]:
        """PyGithub's and requests' exceptions as patchkeeper's (or _ApiDown)."""
        where = self._where(number)
        try:
            yield
        except (RateLimitExceededExceedsMaxWait, RateLimitExceededException) as err:
            raise UnreachableError(rate_limit_message(where, err.headers, self.settings)) from None
        except BadCredentialsException:
            raise ConfigError(
                f"{where}: GitHub rejected the token in {self.settings.token_source} "
                "(401 Bad credentials)"
            ) from None
        except UnknownObjectException:
            raise UpstreamError(f"{where}: not found (404); check the patchset's github:") from None
        except GithubException as err:
            if err.status == 429:
                raise UnreachableError(
                    rate_limit_message(where, err.headers, self.settings)
                ) from None
            if err.status >= 500:
                raise _ApiDown(f"{where}: {err.status}") from None
            message = err.data.get("message") if isinstance(err.data, dict) else None
            raise UpstreamError(f"{where}: GitHub answered {err.status} ({message})") from None
        except requests.RequestException as err:
            raise _ApiDown(f"{redact(self.settings.api_url)}: {type(err).__name__}") from None


# --- the resolver ----------------------------------------------------------------------------


def _stderr(message: str) -> None:
    err_console.print(f"[yellow]warning[/] {escape(message)}")


def enrich(change: UpstreamChange, info: PullInfo) -> UpstreamChange:
    """GitHub's view on top of git's. "merged" means the change is on a branch: git proves it
    by history (kept even if the PR itself was closed and its commits landed otherwise, and
    "reverted" when a later commit undid it), GitHub by `merged` (then its merge commit
    serves ancestry when git found none). Open versus closed only GitHub knows."""
    state: PrState
    if change.state in (PrState.MERGED, PrState.REVERTED):
        state, merge = change.state, change.merge_commit
    elif info.merged:
        state, merge = PrState.MERGED, info.merge_commit_sha
    else:
        state = PrState(info.state)
        merge = None
    return replace(
        change,
        state=state,
        merge_commit=merge,
        title=info.title,
        merged_at=info.merged_at,
        changed_files=info.files,
    )


class GitHubResolver:
    """A GitResolver whose changes carry GitHub's titles, states and files."""

    def __init__(
        self,
        git: GitResolver,
        settings: GitHubSettings,
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        if not git.upstream.github:
            raise ConfigError("GitHubResolver needs a patchset with 'github: owner/name'")
        self.git = git
        self.pulls = GitHubPulls(git.upstream.github, settings)
        self._warn = warn
        self._info: dict[int, PullInfo] = {}

    def prepare(self, patches: Sequence[Patch]) -> None:
        self.git.prepare(patches)
        self._info = {}
        for number in dict.fromkeys(p.pr for p in patches if p.pr is not None):
            try:
                self._info[number] = self.pulls.get(number)
            except _ApiDown as err:
                self._warn(f"GitHub API unreachable ({err}); resolving from git alone")
                return

    def resolve(self, patchset: str, patch: Patch) -> UpstreamChange:
        info = self._info.get(patch.pr) if patch.pr is not None else None
        hint = info.merge_commit_sha if info is not None and info.merged else None
        change = self.git.resolve(patchset, patch, hint)
        if info is None:
            return change
        if change.head and info.head_sha != change.head:
            self._warn(
                f"PR #{patch.pr}: GitHub's head {info.head_sha[:12]} is not "
                f"refs/pull/{patch.pr}/head {change.head[:12]} in {redact(self.git.mirror.url)}"
            )
        return enrich(change, info)

    def has_commit(self, sha: str) -> bool:
        return self.git.has_commit(sha)

    def contained(self, commits: Sequence[str], tips: Sequence[str]) -> dict[str, frozenset[str]]:
        return self.git.contained(commits, tips)

    def files_at(
        self, commit: str, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes | None]:
        return self.git.files_at(commit, paths)

    def blobs(
        self, named: Sequence[tuple[PurePosixPath, str]]
    ) -> dict[tuple[PurePosixPath, str], UpstreamBlob]:
        return self.git.blobs(named)

    def changed_by(self, change: UpstreamChange, until: str) -> str | None:
        return self.git.changed_by(change, until)


def with_github(git: GitResolver) -> UpstreamResolver:
    """The resolver a patchset gets: GitHub-enriched when it names `github:` and
    PATCHKEEPER_OFFLINE is not set, git alone otherwise."""
    if git.upstream.github and not offline():
        return GitHubResolver(git, GitHubSettings.from_env())
    return git
