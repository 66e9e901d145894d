"""A cached, blobless bare mirror of one upstream branch and the PRs asked for.

What a sync needs from upstream is the branch's commit graph (ancestry, subjects), the
listed PRs' refs, the blobs of the files those PRs touch and the blobs local diffs name:
a partial clone (`--filter=blob:none`) of exactly those refs, with those blobs fetched in
one batch each (`prefetch`, `fetch_blobs`). A server that refuses filters gets a full
fetch, with a warning.

The mirror's config holds a credential-free URL only: credentials in the configured URL
reach git through a credential helper that reads them from the environment of each git it
runs (lazy fetches of promisor objects included), never a file or a command line (which
`ps` shows to anyone). Transfers slower than the low-speed limit are abandoned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import git
from filelock import FileLock
from git.cmd import handle_process_output
from git.remote import RemoteProgress
from git.util import finalize_process
from rich.markup import escape

from patchkeeper.errors import UnreachableError, UpstreamError, redact, register_secret
from patchkeeper.lowspeed import LowSpeed
from patchkeeper.paths import cache_dir, directory
from patchkeeper.ui import err_console

log = logging.getLogger(__name__)

PULL_REF = "refs/pull/{number}/{kind}"
REMOTE = "upstream"
FILTER = "blob:none"
_FILTER_REFUSED = "filtering not recognized by server"
_NO_REF = re.compile(r"couldn't find remote ref (?P<ref>\S+)")
_NULL_OID = "0" * 40


def _slug(url: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "-", redact(url).rstrip("/").rsplit("/", 1)[-1])
    return f"{tail.removesuffix('.git')}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def split_credentials(url: str) -> tuple[str, str | None]:
    """(URL without user:password@, the URL itself if it had any): only the first is stored."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc or parts.scheme in ("ssh", "git+ssh"):
        return url, None  # scp-like or ssh: a user name, not a secret
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), url


# Answers git's credential requests from the environment, which only the user can read
# (a command line is readable by anyone through `ps`).
_HELPER = (
    '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
    '"$PATCHKEEPER_GIT_USERNAME" "$PATCHKEEPER_GIT_PASSWORD"; }; f'
)


def _git_environment(clean_url: str, secret_url: str | None) -> dict[str, str]:
    """What every git run on the mirror gets: no prompts, the low-speed limit, and the
    credentials of `secret_url` (if any) through a credential helper for its host only."""
    config = list(LowSpeed.from_env().git_config().items())
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if secret_url:
        parts = urlsplit(secret_url)
        register_secret(unquote(parts.password or ""))  # never echoed by an error message
        origin = urlunsplit(urlsplit(clean_url)._replace(path="", query="", fragment=""))
        # An empty helper first: helpers configured elsewhere are not asked.
        config += [(f"credential.{origin}.helper", ""), (f"credential.{origin}.helper", _HELPER)]
        env |= {
            "PATCHKEEPER_GIT_USERNAME": unquote(parts.username or ""),
            "PATCHKEEPER_GIT_PASSWORD": unquote(parts.password or ""),
        }
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for n, (key, value) in enumerate(config):
        env |= {f"GIT_CONFIG_KEY_{n}": key, f"GIT_CONFIG_VALUE_{n}": value}
    return env


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning[/] {escape(message)}")


def git_processes_in(path: Path) -> list[int] | None:
    """Pids of git processes (not our own children) that may work in `path`, wherever they
    were started: their cwd, an open or mapped file, a path on their command line
    (`--git-dir=`, `-C`) or in their `GIT_*` environment lies inside it. None where the
    platform cannot tell (no /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    root, me, found = os.path.realpath(path), os.getpid(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if not comm.startswith("git") or ppid == me:
                continue  # our own children are read-only helpers, we hold the mirror lock
            places = _places(entry)
        except (OSError, ValueError, IndexError):
            continue  # gone, or not ours to inspect
        if any(p == root or p.startswith(root + os.sep) for p in places):
            found.append(int(entry.name))
    return found


def _places(entry: Path) -> list[str]:
    """Every path process `entry` may work in, absolute and with symlinks resolved."""
    cwd = os.readlink(entry / "cwd")
    named = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
    named += [
        line.split(None, 5)[5]
        for line in (entry / "maps").read_text().splitlines()
        if len(line.split(None, 5)) == 6
    ]
    for arg in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0"):
        named += [arg, arg.partition("=")[2]]  # `--git-dir=PATH` as well as `-C PATH`
    for variable in (entry / "environ").read_bytes().decode(errors="replace").split("\0"):
        if variable.startswith("GIT_"):
            named.append(variable.partition("=")[2])
    return [cwd] + [os.path.realpath(os.path.join(cwd, n)) for n in named if n]


class GitMirror:
    """Bare, blobless repository under the cache dir; fetches only the refs asked for."""

    def __init__(
        self, url: str, root: Path | None = None, warn: Callable[[str], None] = _warn
    ) -> None:
        self.url = url
        self.clean_url, secret_url = split_credentials(url)
        folder = directory(root or cache_dir() / "mirrors", "mirror cache directory")
        self.path = folder / f"{_slug(url)}.git"
        self.warn = warn
        self._lock = FileLock(str(self.path) + ".lock")
        with self._lock:
            self._open()
        self.repo.git.update_environment(**_git_environment(self.clean_url, secret_url))

    def _open(self) -> None:
        """The mirror, made when missing; one that is damaged (a file in its place, objects/
        or refs/ gone, a garbled config) is moved aside, with a warning, and made anew:
        a cache heals instead of failing every later sync."""
        damage = self._damage()
        if damage is not None:
            aside = self.path.with_name(
                f"{self.path.name}.damaged-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
            )
            self.path.rename(aside)
            self.warn(
                f"the cached mirror {self.path} was damaged ({damage}): moved it to {aside} "
                "(delete it when done looking) and fetching a new one"
            )
        if not self.path.exists():
            git.Repo.init(self.path, bare=True, mkdir=True)
        self.repo = git.Repo(self.path)
        self._configure()

    def _damage(self) -> str | None:
        """What is wrong with the mirror on disk (None: nothing, or no mirror yet)."""
        if not self.path.exists() and not self.path.is_symlink():
            return None
        if self.path.is_symlink() or not self.path.is_dir():
            return "not a directory"
        missing = [n for n in ("HEAD", "objects", "refs", "config") if not (self.path / n).exists()]
        if missing:
            return f"no {', '.join(missing)}"
        checks = (
            ("unreadable config", ["config", "--file", "config", "--list"]),
            ("not a git repository", ["rev-parse", "--git-dir", "--is-shallow-repository"]),
            ("broken refs", ["for-each-ref", "--format=%(refname)"]),
        )
        here = {**os.environ, "GIT_DIR": str(self.path)}  # never a repository around it
        for what, args in checks:
            done = subprocess.run(
                ["git", *args], cwd=self.path, env=here, capture_output=True, check=False
            )
            said = done.stderr.decode(errors="replace").strip()
            if done.returncode != 0 or "broken ref" in said:  # git only warns of those
                return f"{what}: {said.splitlines()[0] if said else done.returncode}"
        return None

    def git_env(self) -> dict[str, str]:
        """The environment for a git run by hand in the mirror (`subprocess`), so that git's
        lazy fetch of a missing blob gets the credentials and never prompts."""
        return {**os.environ, **self.repo.git.environment()}

    def _configure(self) -> None:
        """A promisor remote by a credential-free URL: what lazy fetches of blobs use."""
        wanted = {
            "core.repositoryformatversion": "1",  # extensions need format 1
            "extensions.partialClone": REMOTE,
            f"remote.{REMOTE}.url": self.clean_url,
            f"remote.{REMOTE}.promisor": "true",
            f"remote.{REMOTE}.partialclonefilter": FILTER,
            "gc.autoDetach": "false",  # no gc left running (and locking) after we return
        }
        listed = str(self.repo.git.config("--local", "--list")).splitlines()
        current = dict(line.partition("=")[::2] for line in listed)
        if any(current.get(k.lower()) != v for k, v in wanted.items()):
            for key, value in wanted.items():
                self.repo.git.config(key, value)

    def fetch(
        self, branch: str, pulls: Sequence[int], progress: RemoteProgress | None = None
    ) -> None:
        """One fetch (one negotiation) for the branch and each PR's refs that exist upstream.

        `refs/pull/N/*` is filtered by the server (no listing of every ref), a missing
        merge ref is simply absent, and one that disappeared upstream is pruned here.
        """
        refspecs = [f"+refs/heads/{branch}:refs/heads/{branch}"]
        refspecs += [f"+refs/pull/{n}/*:refs/pull/{n}/*" for n in sorted(set(pulls))]
        with self._lock:
            self.recover_stale_locks()
            self._fetch(refspecs, progress or RemoteProgress(), branch)
            # Ancestry questions walk the graph: a commit-graph makes them several times faster.
            self.repo.git.commit_graph("write", "--reachable", "--split")

    def _fetch(self, refspecs: list[str], progress: RemoteProgress, branch: str) -> None:
        log.info("git fetch %s (%d refspec(s)) into %s", self.clean_url, len(refspecs), self.path)
        args = ["--filter=" + FILTER, "--prune", "--no-tags", "--no-write-fetch-head"]
        proc = self.repo.git.fetch(*args, "--progress", REMOTE, *refspecs, as_process=True)
        try:
            handle_process_output(
                proc, None, progress.new_message_handler(), finalize_process, decode_streams=False
            )
        except git.GitCommandError:
            lines = progress.error_lines + progress.other_lines
            missing = next((m for line in lines if (m := _NO_REF.search(line))), None)
            if missing and missing["ref"] == f"refs/heads/{branch}":
                raise UpstreamError(f"{self.url} has no branch {branch!r}") from None
            detail = " ".join(progress.error_lines + progress.other_lines[-3:]).strip()
            raise UnreachableError(f"cannot fetch {self.url}: {detail}") from None
        if any(_FILTER_REFUSED in line for line in progress.other_lines + progress.error_lines):
            self.warn(
                f"{redact(self.url)} does not serve partial clones (a git server needs "
                "uploadpack.allowFilter=true; GitHub and GitLab allow it): fetched every "
                "blob of the branch and PRs instead"
            )

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Fetch, in one request, the blobs missing for diffs between each (old, new) commit
        pair: what diffs and reads of those files at those commits need. Returns how many."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return 0
        needed: set[str] = set()
        for old, new in pairs:
            raw = str(self.repo.git.diff_tree("-r", "-z", "--raw", "--no-renames", old, new))
            fields = raw.split("\0")
            for meta in fields[0::2]:
                parts = meta.lstrip(":").split()
                if len(parts) >= 4:
                    modes, oids = parts[0:2], parts[2:4]
                    needed |= {o for m, o in zip(modes, oids, strict=True) if m != "160000"}
        needed.discard(_NULL_OID)
        commits = sorted({c for pair in pairs for c in pair})
        listing = str(self.repo.git.rev_list("--objects", "--missing=print", "--no-walk", *commits))
        missing = {line[1:].split()[0] for line in listing.splitlines() if line.startswith("?")}
        wanted = sorted(needed & missing)
        if wanted:
            with self._lock:
                self._fetch_objects(wanted)
        return len(wanted)

    def blob_history(self, paths: Sequence[PurePosixPath]) -> dict[PurePosixPath, dict[str, str]]:
        """Every blob each of `paths` has held on the fetched refs, with a commit whose tree
        holds it: read from trees alone (no blob is fetched; renames are not followed)."""
        command = ["git", "log", "--all", "-m", "--raw", "--no-abbrev", "--no-renames", "-z"]
        done = subprocess.run(
            [*command, "--format=%H", "--", *map(str, paths)],
            cwd=self.path,
            env={**self.git_env(), "GIT_LITERAL_PATHSPECS": "1"},
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise UpstreamError(f"cannot read the history of {self.path}: {detail}")
        found: dict[PurePosixPath, dict[str, str]] = {path: {} for path in paths}
        tokens = iter(done.stdout.decode("utf-8", "surrogateescape").split("\0"))
        commit = ""
        for token in tokens:
            token = token.lstrip("\n")
            if not token.startswith(":"):
                commit = token or commit
                continue
            mode, blob = token.split()[1], token.split()[3]
            path = PurePosixPath(next(tokens, ""))
            if path in found and mode not in ("000000", "160000"):  # not deleted, no submodule
                found[path].setdefault(blob, commit)
        return found

    def fetch_blobs(self, held_by: Mapping[str, str]) -> int:
        """Fetch, in one request, those blobs (id -> a commit whose tree holds it) the partial
        clone lacks. Returns how many."""
        if not held_by:
            return 0
        commits = sorted(set(held_by.values()))
        listing = str(self.repo.git.rev_list("--objects", "--missing=print", "--no-walk", *commits))
        missing = {line[1:].split()[0] for line in listing.splitlines() if line.startswith("?")}
        wanted = sorted(set(held_by) & missing)
        if wanted:
            with self._lock:
                self._fetch_objects(wanted)
        return len(wanted)

    def cat_file(self, requests: Sequence[str], what: str) -> list[bytes | None]:
        """One `git cat-file --batch` for `requests` (`<commit>:<path>`, object ids): each
        one's bytes, None where it names no blob. In a partial clone git fetches the missing
        blobs from the promisor remote as it goes; `what` names the batch in errors."""
        if not requests:
            return []
        done = subprocess.run(
            ["git", "-C", str(self.path), "cat-file", "--batch"],
            input="".join(f"{request}\n" for request in requests).encode(),
            capture_output=True,
            check=False,
            env=self.git_env(),
        )
        if done.returncode:
            detail = done.stderr.decode(errors="replace").strip()
            raise UpstreamError(f"cannot read {what} in {self.url}: {detail}")
        out, at, found = done.stdout, 0, []
        for _ in requests:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            at = end + 1
            if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
                size = int(header[2])
                found.append(out[at : at + size] if header[1] == b"blob" else None)
                at += size + 1
            else:  # "<request> missing" (or ambiguous): no such object
                found.append(None)
        return found

    def _fetch_objects(self, oids: Sequence[str]) -> None:
        """What git's own lazy fetch runs, for many objects at once."""
        command = ["git", "-c", "fetch.negotiationAlgorithm=noop", "fetch", REMOTE, "--stdin"]
        command += ["--no-tags", "--no-write-fetch-head", "--recurse-submodules=no"]
        done = subprocess.run(
            [*command, "--filter=" + FILTER],
            cwd=self.path,
            env=self.git_env(),
            input="".join(f"{oid}\n" for oid in oids).encode(),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise UnreachableError(f"cannot fetch {len(oids)} blob(s) from {self.url}: {detail}")

    def recover_stale_locks(self) -> None:
        """Remove `*.lock` files a killed git left, only when no git process works here.

        Called with the mirror's own lock held, so no other patchkeeper is using it.
        """
        locks = sorted(self.path.rglob("*.lock"))
        if not locks:
            return
        names = ", ".join(str(p.relative_to(self.path)) for p in locks)
        holders = git_processes_in(self.path)
        if holders is None:
            raise UpstreamError(
                f"{self.path} has lock files ({names}); this platform cannot tell whether a "
                "git process still holds them: remove them once no git runs there"
            )
        if holders:
            raise UpstreamError(
                f"{self.path} is in use by git (pid {', '.join(map(str, holders))}), which "
                f"holds {names}; wait for it to finish or stop it"
            )
        for lock in locks:
            lock.unlink(missing_ok=True)
        self.warn(f"removed stale lock file(s) {names} from {self.path} (left by a killed git)")

    def has_commit(self, rev: str) -> bool:
        try:
            self.repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def rev(self, rev: str) -> str | None:
        return str(self.repo.git.rev_parse(f"{rev}^{{commit}}")) if self.has_commit(rev) else None
