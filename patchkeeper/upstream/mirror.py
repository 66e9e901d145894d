"""A cached bare mirror of an upstream repository, shared by all runs."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import git
from filelock import FileLock
from git.cmd import handle_process_output
from git.remote import RemoteProgress
from git.util import finalize_process

from patchkeeper.errors import UnreachableError, UpstreamError, redact
from patchkeeper.paths import cache_dir

log = logging.getLogger(__name__)

PULL_REF = "refs/pull/{number}/{kind}"


def _slug(url: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "-", redact(url).rstrip("/").rsplit("/", 1)[-1])
    return f"{tail.removesuffix('.git')}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class GitMirror:
    """Bare repository under the cache dir; fetches only the refs asked for."""

    def __init__(self, url: str, root: Path | None = None) -> None:
        self.url = url
        self.path = (root or cache_dir() / "mirrors") / f"{_slug(url)}.git"
        self._lock = FileLock(str(self.path) + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not (self.path / "HEAD").exists():
                git.Repo.init(self.path, bare=True)
        self.repo = git.Repo(self.path)

    def fetch(
        self, branch: str, pulls: Sequence[int], progress: RemoteProgress | None = None
    ) -> None:
        """Fetch all branches plus the PR heads (and merge refs) that exist upstream."""
        wanted = [PULL_REF.format(number=n, kind=k) for n in pulls for k in ("head", "merge")]
        with self._lock:
            existing = self._ls_remote(wanted) if wanted else set()
            refspecs = ["+refs/heads/*:refs/heads/*"] + [
                f"+{ref}:{ref}" for ref in wanted if ref in existing
            ]
            for ref in set(wanted) - existing:  # stale refs from an earlier fetch lie
                self._delete_ref(ref)
            self._fetch(refspecs, progress or RemoteProgress())
        if not self.has_commit(f"refs/heads/{branch}"):
            raise UpstreamError(f"{self.url} has no branch {branch!r}")

    def _fetch(self, refspecs: list[str], progress: RemoteProgress) -> None:
        """`git fetch` by URL (no remote, so no URL is stored), reporting progress."""
        log.info("git fetch %s (%d refspec(s)) into %s", self.url, len(refspecs), self.repo.git_dir)
        proc = self.repo.git.fetch(
            self.url, *refspecs, "--prune", "--no-tags", "--progress", as_process=True
        )
        try:
            handle_process_output(
                proc, None, progress.new_message_handler(), finalize_process, decode_streams=False
            )
        except git.GitCommandError:
            detail = " ".join(progress.error_lines + progress.other_lines[-3:]).strip()
            raise UnreachableError(f"cannot fetch {self.url}: {detail}") from None

    def _ls_remote(self, refs: Iterable[str]) -> set[str]:
        try:
            out = str(self.repo.git.ls_remote(self.url, *refs))
        except git.GitCommandError as err:
            raise UnreachableError(f"cannot reach {self.url}: {err.stderr.strip()}") from None
        return {line.split("\t", 1)[1] for line in out.splitlines() if "\t" in line}

    def _delete_ref(self, ref: str) -> None:
        if self.has_commit(ref):
            self.repo.git.update_ref("-d", ref)

    def has_commit(self, rev: str) -> bool:
        try:
            self.repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def rev(self, rev: str) -> str | None:
        return str(self.repo.git.rev_parse(f"{rev}^{{commit}}")) if self.has_commit(rev) else None
