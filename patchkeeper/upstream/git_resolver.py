"""Resolve PRs from git alone: refs/pull/N/head plus the branch's first-parent history.

A PR *landed* on the branch when a first-parent commit brought it in: a squash whose
subject ends in `(#N)`, a merge commit ("Merge pull request #N"), the PR's head itself
(fast-forward), a merge commit with the head as an ancestor, or a rebased copy of the
head (same author, author date and subject). The newest landing wins (relands), and a
later first-parent commit that reverts it (a `git revert` body or GitHub's
`Revert "<subject>"`) makes the PR *reverted* until that revert is reverted in turn.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

import git
from git.remote import RemoteProgress

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.containment import ancestry_masks
from patchkeeper.errors import ConfigError, UpstreamError, redact
from patchkeeper.upstream.blobs import find_blobs
from patchkeeper.upstream.mirror import PULL_REF, GitMirror
from patchkeeper.upstream.model import PrState, UpstreamBlob, UpstreamChange

_SQUASH_SUBJECT = re.compile(r"\(#(?P<pr>\d+)\)\s*$")
_MERGE_SUBJECT = re.compile(r"^Merge pull request #(?P<pr>\d+)\b")
_REVERT_SUBJECT = re.compile(r'^Revert "(?P<subject>.*)"(?:\s*\(#\d+\))?\s*$')
_REVERT_BODY = re.compile(r"This reverts commit (?P<sha>[0-9a-f]{7,64})")
DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "--find-renames", "--full-index")
_FIELDS = ("sha", "parents", "author", "subject", "body")


@dataclass(frozen=True)
class FirstParent:
    """One commit of the branch's first-parent history (its own line of work)."""

    index: int  # 0: the oldest
    sha: str
    author: str  # name <email> seconds: kept by rebases and cherry-picks
    subject: str
    body: str

    def reverts(self, other: FirstParent) -> bool:
        body = _REVERT_BODY.search(self.body)
        if body and other.sha.startswith(body["sha"]):
            return True
        subject = _REVERT_SUBJECT.match(self.subject)
        return subject is not None and subject["subject"] == other.subject


@dataclass(frozen=True)
class Landing:
    commit: str
    how: str  # squash, merge commit, fast-forward, rebase, GitHub
    reverted_by: str | None


class GitResolver:
    """The offline resolver: any git remote, no API calls."""

    def __init__(
        self, upstream: Upstream, mirror: GitMirror, progress: RemoteProgress | None = None
    ) -> None:
        self.upstream = upstream
        self.mirror = mirror
        self.progress = progress
        self.branch = f"refs/heads/{upstream.branch}"

    def prepare(self, patches: Sequence[Patch]) -> None:
        """Fetch the branch and PR refs, then every blob the PRs' diffs (and reads of their
        files at base and result) need, in one more request."""
        pulls = [p.pr for p in patches if p.pr is not None]
        self.mirror.fetch(self.upstream.branch, pulls, self.progress)
        self.__dict__.pop("_history", None)
        self.__dict__.pop("_by_sha", None)
        pairs = []
        for number in pulls:
            head = self.mirror.rev(PULL_REF.format(number=number, kind="head"))
            if head is not None:
                with contextlib.suppress(UpstreamError):  # resolve() names the PR's problem
                    pairs.append(self._endpoints(number, head, None)[:2])
        self.mirror.prefetch(pairs)

    @cached_property
    def _history(self) -> list[FirstParent]:
        """The branch's first-parent commits, oldest first."""
        fmt = "%x1f".join(("%H", "%P", "%an <%ae> %at", "%s", "%b")) + "%x1e"
        log = str(
            self.mirror.repo.git.log("--first-parent", "--reverse", f"--format={fmt}", self.branch)
        )
        found: list[FirstParent] = []
        for record in log.split("\x1e"):
            values = record.strip("\n").split("\x1f")
            if len(values) == len(_FIELDS):
                sha, _, author, subject, body = values
                found.append(FirstParent(len(found), sha, author, subject, body))
        return found

    @cached_property
    def _by_sha(self) -> dict[str, FirstParent]:
        return {c.sha: c for c in self._history}

    def landing(self, number: int, head: str, hint: str | None = None) -> Landing | None:
        """Where PR `number` (head `head`) landed on the branch, newest landing first;
        `hint` is GitHub's merge_commit_sha, used when git finds no landing itself."""
        candidates = [
            (c, "merge commit" if _MERGE_SUBJECT.search(c.subject) else "squash")
            for c in self._history
            if (m := _SQUASH_SUBJECT.search(c.subject) or _MERGE_SUBJECT.search(c.subject))
            and int(m["pr"]) == number
        ]
        by_ancestry = self._landed_by_ancestry(head)
        if by_ancestry is not None:
            candidates.append(by_ancestry)
        if not candidates:
            candidates += [(c, "rebase") for c in self._rebased_copies(head)]
        if not candidates and hint in self._by_sha:
            candidates.append((self._by_sha[hint], "GitHub"))
        if not candidates:
            return None
        landed, how = max(candidates, key=lambda item: item[0].index)
        return Landing(landed.sha, how, self._reverted_by(landed))

    def _landed_by_ancestry(self, head: str) -> tuple[FirstParent, str] | None:
        if head in self._by_sha:
            return self._by_sha[head], "fast-forward"
        if not self.is_ancestor(head, self.branch):
            return None
        # The oldest first-parent commit that descends from head is the merge that brought it.
        descendants = set(
            str(self.mirror.repo.git.rev_list("--ancestry-path", f"{head}..{self.branch}")).split()
        )
        landed = next(c for c in self._history if c.sha in descendants)
        return landed, "merge commit"

    def _rebased_copies(self, head: str) -> list[FirstParent]:
        """First-parent commits with the head's author, author date and subject."""
        shown = str(self.mirror.repo.git.show("-s", "--format=%an <%ae> %at%x1f%s", head))
        author, _, subject = shown.partition("\x1f")
        return [c for c in self._history if c.author == author and c.subject == subject]

    def _reverted_by(self, landed: FirstParent) -> str | None:
        """The later first-parent commit that reverted `landed` (None if none, or if that
        revert was reverted in turn)."""
        target, revert = landed, None
        for commit in self._history[landed.index + 1 :]:
            if commit.reverts(target):
                revert = None if revert else commit.sha
                target = commit
        return revert

    def _endpoints(
        self, number: int, head: str, hint: str | None
    ) -> tuple[str, str, Landing | None]:
        """(base, result, landing): the commits whose difference is the PR's change."""
        landed = self.landing(number, head, hint)
        how = landed.how if landed else None
        if landed is not None and how in ("squash", "merge commit"):
            return f"{landed.commit}^1", landed.commit, landed
        if how == "fast-forward":  # which earlier commits were the PR's, git cannot tell
            return f"{head}^1", head, landed
        # Rebased copies, GitHub's word alone, or unmerged: the PR's own commits.
        try:
            base = str(self.mirror.repo.git.merge_base(self.branch, head))
        except git.GitCommandError:
            raise UpstreamError(
                f"PR #{number}: its head {head[:12]} shares no history with "
                f"{self.upstream.branch!r} of {redact(self.upstream.clone_url)} (no merge base): "
                "there is no change to port; drop the PR or ask its author to rebase it"
            ) from None
        return base, head, landed

    def resolve(self, patchset: str, patch: Patch, hint: str | None = None) -> UpstreamChange:
        if patch.diff is not None:
            try:
                text = patch.diff.read_bytes().decode("utf-8")  # as is: CRLF lines kept
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"patch {patch.key}: cannot read {patch.diff}: {err}") from None
            return UpstreamChange(patchset, patch, PrState.LOCAL, text)
        assert patch.pr is not None
        head = self.mirror.rev(PULL_REF.format(number=patch.pr, kind="head"))
        if head is None:
            raise UpstreamError(
                f"PR #{patch.pr} not found upstream ({self.upstream.clone_url}): "
                f"no {PULL_REF.format(number=patch.pr, kind='head')}"
            )
        old, new, landed = self._endpoints(patch.pr, head, hint)
        base = self.mirror.rev(old)
        if landed is not None:
            state = PrState.REVERTED if landed.reverted_by else PrState.MERGED
            title = self.mirror.repo.commit(landed.commit).summary
            return UpstreamChange(
                patchset,
                patch,
                state,
                self._diff(old, new),
                head,
                landed.commit,
                base,
                str(title),
                reverted_by=landed.reverted_by,
                landed_as=landed.how,
            )
        has_merge_ref = self.mirror.has_commit(PULL_REF.format(number=patch.pr, kind="merge"))
        state = PrState.OPEN if has_merge_ref else PrState.CLOSED
        title = self.mirror.repo.commit(head).summary
        return UpstreamChange(
            patchset, patch, state, self._diff(old, new), head, None, base, str(title)
        )

    def changed_by(self, change: UpstreamChange, until: str) -> str | None:
        """The first first-parent commit after the PR landed (up to `until`) that removes a
        line the PR added: what superseded it. Fetches the blobs that takes in one request."""
        if not change.merge_commit or not self.has_commit(until):
            return None
        lines = change.diff.splitlines()
        added = {s[1:] for s in lines if s[:1] == "+" and s[:4] != "+++ " and s[1:].strip()}
        paths = [s[6:] for s in lines if s.startswith("+++ b/")]
        if not added or not paths:
            return None
        span = f"{change.merge_commit}..{until}"
        commits = str(self.mirror.repo.git.rev_list("--first-parent", span, "--", *paths)).split()
        self.mirror.prefetch((f"{c}^1", c) for c in commits)
        for commit in reversed(commits):  # oldest first
            diff = self.mirror.repo.git.diff(*DIFF_FLAGS, f"{commit}^1", commit, "--", *paths)
            removed = {s[1:] for s in str(diff).splitlines() if s[:1] == "-" and s[:4] != "--- "}
            if added & removed:
                return commit
        return None

    def _diff(self, old: str, new: str) -> str:
        try:
            return str(self.mirror.repo.git.diff(*DIFF_FLAGS, old, new)) + "\n"
        except git.GitCommandError as err:
            raise UpstreamError(f"git diff {old}..{new} failed: {err.stderr.strip()}") from None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self.mirror.repo.git.merge_base("--is-ancestor", ancestor, descendant)
        except git.GitCommandError:
            return False
        return True

    def has_commit(self, sha: str) -> bool:
        return self.mirror.has_commit(sha)

    def contained(self, commits: Sequence[str], tips: Sequence[str]) -> dict[str, frozenset[str]]:
        if not tips:
            return {}
        # One rev-list for every tip; tips unknown upstream simply contain nothing.
        lines = str(
            self.mirror.repo.git.rev_list(
                "--ignore-missing", "--topo-order", "--reverse", "--parents", *tips
            )
        )
        return ancestry_masks(lines.splitlines(), commits, tips)

    def files_at(
        self, commit: str, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, bytes | None]:
        """One `git cat-file --batch` for all paths (missing blobs fetched as it goes)."""
        requests = [f"{commit}:{path}" for path in paths]
        found = self.mirror.cat_file(requests, f"files at {commit}")
        return dict(zip(paths, found, strict=True))

    def blobs(
        self, named: Sequence[tuple[PurePosixPath, str]]
    ) -> dict[tuple[PurePosixPath, str], UpstreamBlob]:
        return find_blobs(self.mirror, named)
