"""Resolve PRs from git alone: refs/pull/N/head plus the branch's history."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from functools import cached_property
from pathlib import PurePosixPath

import git
from git.remote import RemoteProgress

from patchkeeper.config.models import Patch, Upstream
from patchkeeper.containment import ancestry_masks
from patchkeeper.errors import ConfigError, UpstreamError
from patchkeeper.upstream.mirror import PULL_REF, GitMirror
from patchkeeper.upstream.model import PrState, UpstreamChange

_SQUASH_SUBJECT = re.compile(r"\(#(?P<pr>\d+)\)\s*$")
_MERGE_SUBJECT = re.compile(r"^Merge pull request #(?P<pr>\d+)\b")
DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "--find-renames", "--full-index")


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
        pulls = [p.pr for p in patches if p.pr is not None]
        self.mirror.fetch(self.upstream.branch, pulls, self.progress)
        self.__dict__.pop("_landed_by_subject", None)

    @cached_property
    def _landed_by_subject(self) -> dict[int, str]:
        """PR number -> first-parent commit whose subject names it (newest wins)."""
        log = self.mirror.repo.git.log("--first-parent", "--format=%H %s", self.branch)
        found: dict[int, str] = {}
        for line in reversed(log.splitlines()):
            sha, _, subject = line.partition(" ")
            match = _SQUASH_SUBJECT.search(subject) or _MERGE_SUBJECT.search(subject)
            if match:
                found[int(match["pr"])] = sha
        return found

    def resolve(self, patchset: str, patch: Patch) -> UpstreamChange:
        if patch.diff is not None:
            try:
                text = patch.diff.read_text(encoding="utf-8")
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
        merge = self._merge_commit(patch.pr, head)
        title = self.mirror.repo.commit(merge or head).summary
        if merge is not None:
            first_parent = f"{merge}^1"
            diff = self._diff(first_parent, merge)
            return UpstreamChange(
                patchset,
                patch,
                PrState.MERGED,
                diff,
                head,
                merge,
                self.mirror.rev(first_parent),
                str(title),
            )
        base = self.mirror.repo.git.merge_base(self.branch, head)
        has_merge_ref = self.mirror.has_commit(PULL_REF.format(number=patch.pr, kind="merge"))
        state = PrState.OPEN if has_merge_ref else PrState.CLOSED
        return UpstreamChange(
            patchset, patch, state, self._diff(base, head), head, None, base, str(title)
        )

    def _merge_commit(self, number: int, head: str) -> str | None:
        by_subject = self._landed_by_subject.get(number)
        if by_subject:
            return by_subject
        if not self.is_ancestor(head, self.branch):
            return None
        # The oldest first-parent commit descending from head brought it in.
        path = self.mirror.repo.git.rev_list(
            "--first-parent", "--ancestry-path", "--reverse", f"{head}..{self.branch}"
        ).split()
        return path[0] if path else head

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
        """One `git cat-file --batch` for all paths; in a partial clone git fetches the
        missing blobs from the promisor remote as it goes."""
        if not paths:
            return {}
        request = "".join(f"{commit}:{path}\n" for path in paths).encode()
        done = subprocess.run(
            ["git", "-C", str(self.mirror.path), "cat-file", "--batch"],
            input=request,
            capture_output=True,
            check=False,
        )
        if done.returncode:
            detail = done.stderr.decode(errors="replace").strip()
            raise UpstreamError(f"cannot read files at {commit} in {self.mirror.url}: {detail}")
        out, at, files = done.stdout, 0, {}
        for path in paths:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            at = end + 1
            if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
                size = int(header[2])
                files[path] = out[at : at + size] if header[1] == b"blob" else None
                at += size + 1
            else:  # "<request> missing" (or ambiguous): no such file at that commit
                files[path] = None
        return files
