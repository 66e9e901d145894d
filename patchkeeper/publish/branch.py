"""Commit overlays to a bot branch without touching the checkout the job runs in.

The commit is built in a throwaway index (read-tree of HEAD, add the overlay
paths, write-tree, commit-tree), so the working tree, the real index and the
current branch stay exactly as they were, whatever the job did before.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from patchkeeper.errors import ConfigError, UnreachableError

# Lock files and half-built directories are never part of an overlay.
_NEVER = (":(exclude,glob)**/.patchkeeper.lock", ":(exclude,glob)**/.tmp-*")


@dataclass(frozen=True)
class Author:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Author:
        name, sep, rest = text.partition("<")
        if not sep or not rest.endswith(">") or not name.strip():
            raise ConfigError(f"--author {text!r}: expected 'Name <email>'")
        return cls(name.strip(), rest[:-1].strip())

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


@dataclass(frozen=True)
class BranchUpdate:
    """What happened to the bot branch."""

    branch: str
    base: str
    commit: str | None  # None: the overlays equal the base's, nothing to propose


def _repo(workdir: Path) -> git.Repo:
    try:
        return git.Repo(workdir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ConfigError(f"{workdir}: not inside a git repository") from None


def commit_paths(
    workdir: Path, paths: Sequence[Path], branch: str, message: str, author: Author
) -> BranchUpdate:
    """Commit `paths` (as they are on disk) on top of HEAD as the tip of `branch`."""
    repo = _repo(workdir)
    top = Path(str(repo.working_tree_dir)).resolve()
    relative = []
    for path in paths:
        if not path.exists():
            continue
        resolved = path.absolute()
        if not resolved.is_relative_to(top):
            raise ConfigError(f"{path}: outside the repository {top}; cannot commit it")
        relative.append(resolved.relative_to(top).as_posix())
    if repo.head.is_detached is False and repo.active_branch.name == branch:
        raise ConfigError(f"--branch {branch}: is the checked-out branch; use a separate one")
    base = repo.head.commit.hexsha
    with (
        tempfile.TemporaryDirectory(prefix="patchkeeper-index-") as scratch,
        repo.git.custom_environment(GIT_INDEX_FILE=str(Path(scratch) / "index")),
    ):
        repo.git.read_tree(base)
        if relative:
            repo.git.add("--all", "--force", "--", *relative, *_NEVER)
        tree = str(repo.git.write_tree())
    if tree == repo.head.commit.tree.hexsha:
        return BranchUpdate(branch, base, None)
    with repo.git.custom_environment(**author.env()):
        commit = str(repo.git.commit_tree(tree, "-p", base, "-m", message))
    repo.git.update_ref(f"refs/heads/{branch}", commit)
    return BranchUpdate(branch, base, commit)


def push(workdir: Path, update: BranchUpdate, remote: str = "origin") -> BranchUpdate:
    """Force the branch to the new commit, unless the remote already has the same content.

    The lease names the tip we saw, so a push someone made meanwhile is not lost.
    """
    if update.commit is None:
        return update
    repo = _repo(workdir)
    ref = f"refs/heads/{update.branch}"
    try:
        listed = str(repo.git.ls_remote(remote, ref)).split()
        seen = listed[0] if listed else ""
        if seen:
            repo.git.fetch("--quiet", "--no-tags", remote, seen)
            tip = repo.commit(seen)
            new = repo.commit(update.commit)
            if tip.tree == new.tree and [p.hexsha for p in tip.parents] == [update.base]:
                repo.git.update_ref(ref, seen)
                return BranchUpdate(update.branch, update.base, seen)
        repo.git.push(
            "--quiet", f"--force-with-lease={ref}:{seen}", remote, f"{update.commit}:{ref}"
        )
    except git.GitCommandError as err:
        raise UnreachableError(f"pushing {ref} to {remote} failed: {err.stderr.strip()}") from None
    return update


def current_branch(workdir: Path) -> str:
    """The branch the job checked out: the pull request's base."""
    repo = _repo(workdir)
    if repo.head.is_detached:
        raise ConfigError("HEAD is detached: pass --base BRANCH for the pull request")
    return repo.active_branch.name
