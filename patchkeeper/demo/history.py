"""Build a realistic upstream git history: squash merges, merge commits, PR refs.

Commit dates and identities are fixed, so the same script always produces the
same SHAs (and so the same nightly tag names).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Edit:
    """Replace `old` (which must occur exactly once) with `new` in `path`.

    `old=""` creates the file; `new=None` deletes it.
    """

    path: str
    old: str
    new: str | None


class History:
    """A work repository whose `main` grows one scripted commit at a time."""

    def __init__(self, workdir: Path, files: dict[str, bytes], start: int = 1_780_000_000) -> None:
        self.path = workdir
        self._clock = start
        self.pulls: dict[int, str] = {}  # PR number -> head commit
        self.merge_refs: dict[int, str] = {}  # open PRs' test merges
        workdir.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        for name, data in files.items():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "Initial import")

    def git(self, *args: str) -> str:
        self._clock += 60
        stamp = f"@{self._clock} +0000"
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Upstream Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "Upstream Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.invalid",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }
        return subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def head(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev)

    def _apply(self, edits: list[Edit]) -> None:
        for edit in edits:
            target = self.path / edit.path
            if edit.new is None:
                target.unlink()
                continue
            if edit.old == "":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(edit.new)
                continue
            text = target.read_text()
            if text.count(edit.old) != 1:
                raise ValueError(f"{edit.path}: edit anchor occurs {text.count(edit.old)} times")
            target.write_text(text.replace(edit.old, edit.new))
        self.git("add", "-A")

    def commit(self, message: str, edits: list[Edit]) -> str:
        self._apply(edits)
        self.git("commit", "-q", "-m", message)
        return self.head()

    def _pr_branch(self, number: int, title: str, edits: list[Edit], base: str) -> str:
        current = self.git("rev-parse", "--abbrev-ref", "HEAD")
        self.git("checkout", "-q", "-b", f"pr-{number}", base)
        head = self.commit(title, edits)
        self.git("checkout", "-q", current)
        self.pulls[number] = head
        return head

    def squash_pr(self, number: int, title: str, edits: list[Edit], base: str = "HEAD") -> str:
        """GitHub's squash merge: one commit on main whose subject ends in (#N)."""
        self._pr_branch(number, title, edits, self.head(base))
        self.git("merge", "-q", "--squash", f"pr-{number}")
        self.git("commit", "-q", "-m", f"{title} (#{number})")
        return self.head()

    def merge_pr(self, number: int, title: str, edits: list[Edit]) -> str:
        """A merge commit that brings the PR's head into main."""
        self._pr_branch(number, title, edits, self.head())
        self.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #{number}", f"pr-{number}")
        return self.head()

    def open_pr(self, number: int, title: str, edits: list[Edit], base: str = "HEAD") -> str:
        """An open PR: a head ref plus, when it merges cleanly, GitHub's test-merge ref."""
        head = self._pr_branch(number, title, edits, self.head(base))
        self.git("checkout", "-q", "--detach", "main")
        try:
            self.git("merge", "-q", "--no-ff", "-m", f"Merge {head} into main", head)
            self.merge_refs[number] = self.head()
        except subprocess.CalledProcessError:
            self.git("merge", "--abort")
        self.git("checkout", "-q", "main")
        return head

    def closed_pr(self, number: int, title: str, edits: list[Edit]) -> str:
        """Closed without merging: only the head ref remains."""
        return self._pr_branch(number, title, edits, self.head())

    def cherry_pick(self, branch: str, at: str, commit: str) -> str:
        """Start `branch` at `at` and cherry-pick `commit` onto it (a release backport)."""
        self.git("checkout", "-q", "-B", branch, at)
        self.git("cherry-pick", "-x", commit)
        sha = self.head()
        self.git("checkout", "-q", "main")
        return sha

    def publish(self, bare: Path) -> str:
        """Push everything to a bare repository the way GitHub lays it out."""
        self.git("init", "-q", "--bare", str(bare))
        branches = self.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split()
        refspecs = [f"+refs/heads/{b}:refs/heads/{b}" for b in branches if not b.startswith("pr-")]
        refspecs += [f"+{sha}:refs/pull/{n}/head" for n, sha in self.pulls.items()]
        refspecs += [f"+{sha}:refs/pull/{n}/merge" for n, sha in self.merge_refs.items()]
        self.git("push", "-q", str(bare), *refspecs)
        subprocess.run(  # as GitHub does; not self.git, whose clock would move every later SHA
            ["git", "-C", str(bare), "config", "uploadpack.allowFilter", "true"], check=True
        )
        return f"file://{bare.resolve()}"

    def source_tree(self, commit: str, dest: Path) -> Path:
        """A depth-1 clone at `commit`, as a nightly image carries it (HEAD -> main, packed)."""
        self.git("tag", "-f", "nightly-build", commit)
        subprocess.run(
            [
                "git",
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                "nightly-build",
                f"file://{self.path.resolve()}",
                str(dest),
            ],
            check=True,
            capture_output=True,
        )
        for args in (
            ["checkout", "-q", "-B", "main"],
            ["tag", "-d", "nightly-build"],
            ["pack-refs", "--all"],
        ):
            subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
        return dest
