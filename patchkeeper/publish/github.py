"""Tell the maintainer on GitHub: one pull request for the bot branch, one issue per breakage.

Both are idempotent across nights: the open pull request from the branch is
updated in place, and an open issue with the same title gets the new report as
its body instead of a twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import requests
from github import BadAttributeException, Github, GithubException, RateLimitExceededException
from github.Repository import Repository

from patchkeeper.errors import ConfigError, UnreachableError, redact
from patchkeeper.upstream.github import GitHubSettings, client, rate_limit_message

T = TypeVar("T")
LABEL = "patchkeeper"
# GitHub refuses bodies over 65,536 characters.
BODY_LIMIT = 65_000


@dataclass(frozen=True)
class Posted:
    """A pull request or issue patchkeeper created or updated."""

    kind: str  # "pull" or "issue"
    number: int
    url: str
    created: bool


def client_from_env() -> Github:
    """GITHUB_TOKEN or GH_TOKEN, against GITHUB_API_URL (set by Actions; GHE: /api/v3).

    Writes keep PyGithub's pause between them (GitHub's secondary rate limits).
    """
    settings = GitHubSettings.from_env()
    if not settings.token:
        raise ConfigError("publishing to GitHub needs GITHUB_TOKEN (or GH_TOKEN)")
    return client(settings)


def fit(body: str) -> str:
    if len(body) <= BODY_LIMIT:
        return body
    return body[:BODY_LIMIT] + "\n\n… (truncated; the job summary has the whole report)\n"


class GitHubTracker:
    """Pull requests and issues of one repository, through PyGithub."""

    def __init__(
        self, client: Github, repository: str, settings: GitHubSettings | None = None
    ) -> None:
        self.repository = repository
        self.settings = settings or GitHubSettings.from_env()  # for the waits it names
        self._repo: Repository = client.get_repo(repository)

    def _call(self, what: str, action: Callable[[], T]) -> T:
        """PyGithub's and requests' exceptions as patchkeeper's: a rate limit, a 5xx that
        outlasted the retries, a dead connection or a reply not shaped as GitHub documents
        it is unreachable (3), naming the endpoint."""
        where = f"GitHub {self.repository}: {what}"
        try:
            return action()
        except RateLimitExceededException as err:
            raise UnreachableError(rate_limit_message(where, err.headers, self.settings)) from None
        except requests.RequestException as err:
            request = err.request
            endpoint = f"{request.method} {redact(str(request.url))}" if request else "the API"
            cause = getattr(err.args[0], "reason", None) if err.args else None
            raise UnreachableError(f"{where}: {endpoint}: {cause or type(err).__name__}") from None
        except BadAttributeException as err:
            found = type(err.actual_value).__name__
            documented = getattr(err.expected_type, "__name__", str(err.expected_type))
            raise UnreachableError(
                f"{where}: GitHub's reply holds a {found} where its API documents {documented}"
            ) from None
        except GithubException as err:
            message = err.data.get("message") if isinstance(err.data, dict) else err.data
            error = ConfigError if err.status in (401, 403, 404, 422) else UnreachableError
            raise error(f"GitHub {self.repository}: {what}: {err.status} {message}") from None

    def upsert_pull(self, branch: str, base: str, title: str, body: str) -> Posted:
        owner = self.repository.split("/")[0]

        def run() -> Posted:
            for pull in self._repo.get_pulls(state="open", head=f"{owner}:{branch}", base=base):
                pull.edit(title=title, body=fit(body))
                return Posted("pull", pull.number, pull.html_url, created=False)
            pull = self._repo.create_pull(base=base, head=branch, title=title, body=fit(body))
            return Posted("pull", pull.number, pull.html_url, created=True)

        return self._call(f"pull request {branch} -> {base}", run)

    def open_issue(self, title: str, body: str, labels: Sequence[str] = (LABEL,)) -> Posted:
        def run() -> Posted:
            for issue in self._repo.get_issues(state="open", labels=list(labels)):
                if issue.title == title:  # (PRs are listed too; ours carry no label)
                    issue.edit(body=fit(body))
                    return Posted("issue", issue.number, issue.html_url, created=False)
            issue = self._repo.create_issue(title=title, body=fit(body), labels=list(labels))
            return Posted("issue", issue.number, issue.html_url, created=True)

        return self._call(f"issue {title!r}", run)
