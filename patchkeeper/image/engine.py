"""Image source backed by a Docker Engine (docker SDK): no run, and no pull but a
locked image's, by digest (`local_image`, `pull_image`: for `up` and `verify`).

Files are copied out of a created-but-never-started container by archive requests:
one per path and one more per symlink hop, a header-only stat of each parent directory
not yet seen (and a read of those that are symlinks), and one for a git dir's `refs/`;
so only the requested files and links cross the socket. The engine verified the layers
when it pulled them.

Each such container is labelled with the host and process that made it; one whose
process is gone (killed before it could remove it) is removed by the next reader on
the same host, so a killed `sync` or `up` leaks nothing for long.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath
from typing import Any, Protocol

import docker
import docker.errors
from docker.utils import decode_json_header

from patchkeeper.errors import ImageError, UnreachableError, UnsafeInputError
from patchkeeper.image.layers import GIT_FILES
from patchkeeper.image.model import ImageFile, ImageRef, PathKind, ResolvedImage, printable
from patchkeeper.image.paths import MAX_FILE_BYTES, MAX_SYMLINK_HOPS, follow_link

SCRATCH_LABEL = "org.patchkeeper.scratch"  # `host:pid` of the reader that made it

# Go's os.ModeDevice, ModeNamedPipe, ModeSocket, ModeCharDevice, ModeIrregular
_GO_SPECIAL = (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


class EngineSource:
    """Reads images already present in the local Docker Engine."""

    name = "engine"

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        try:
            self.client = client or docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as err:
            raise UnreachableError(f"Docker daemon unreachable: {err}") from None

    def tags(self, repository: str) -> list[str]:
        prefix = f"{repository}:"
        return sorted(
            tag[len(prefix) :]
            for image in self.client.images.list(name=repository)
            for tag in image.tags
            if tag.startswith(prefix)
        )

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        try:
            image = self.client.images.get(str(ref))
        except docker.errors.ImageNotFound:
            raise ImageError(f"image {ref} is not in the local Docker engine") from None
        except docker.errors.APIError as err:
            raise UnreachableError(f"Docker daemon error resolving {ref}: {err}") from None
        repo_digests = [
            d.split("@", 1)[1]
            for d in image.attrs.get("RepoDigests") or []
            if d.split("@", 1)[0] == ref.repository
        ]
        if ref.digest and ref.digest not in repo_digests:
            raise ImageError(f"image {ref}: the engine knows no such digest for it")
        return ResolvedImage(
            ref=ref,
            image_id=image.id,
            digest=ref.digest or (repo_digests[0] if repo_digests else None),
            labels={printable(str(k)): printable(str(v)) for k, v in (image.labels or {}).items()},
            created=printable(str(image.attrs.get("Created") or "")) or None,
            provenance=f"engine {image.id}",
        )

    def accounting(self) -> dict[str, Any]:
        return {"source": self.name, "fetched_bytes": 0, "layers": []}

    @contextmanager
    def _stopped_container(self, image: ResolvedImage) -> Iterator[Any]:
        self._remove_orphans()
        container = self.client.containers.create(
            image.image_id,
            command=["patchkeeper-never-runs"],
            network_disabled=True,
            labels={SCRATCH_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
        )
        try:
            yield container
        finally:
            container.remove(force=True)

    def _remove_orphans(self) -> None:
        """Never-started containers a reader on this host made and could not remove."""
        here = socket.gethostname()
        # One listing, no per-container inspect: others' scratch containers come and go.
        for container in self.client.api.containers(
            all=True, filters={"label": SCRATCH_LABEL, "status": "created"}
        ):
            labels = container.get("Labels") or {}
            host, _, pid = str(labels.get(SCRATCH_LABEL, "")).rpartition(":")
            if host == here and pid.isdigit() and not _alive(int(pid)):
                with suppress(docker.errors.APIError):  # NotFound included: gone already
                    self.client.api.remove_container(container["Id"], force=True)

    def read(
        self,
        image: ResolvedImage,
        paths: Sequence[PurePosixPath],
        git_dirs: Sequence[PurePosixPath] = (),
    ) -> dict[PurePosixPath, ImageFile | None]:
        with self._stopped_container(image) as container:
            links: dict[PurePosixPath, str | None] = {}  # stats shared by every path
            found = {path: self._read_one(container, path, links) for path in paths}
            for git_dir in git_dirs:
                found.update(self._git_metadata(container, git_dir, links))
            return found

    def kinds(
        self, image: ResolvedImage, paths: Sequence[PurePosixPath]
    ) -> dict[PurePosixPath, PathKind]:
        with self._stopped_container(image) as container:
            return {path: _kind(self._stat(container, path)) for path in paths}

    def _stat(self, container: Any, path: PurePosixPath) -> dict[str, Any] | None:
        """The engine's stat of `path` (it lstats the last component, following symlinks
        in the parents inside the container), from the archive response's header alone:
        the response is closed unread, so a directory's tree never crosses the socket.
        None: no such path (also below a regular file)."""
        api = self.client.api
        response = api._get(
            api._url("/containers/{0}/archive", container.id), params={"path": str(path)},
            stream=True,
        )  # fmt: skip
        try:
            api._raise_for_status(response)
            header = response.headers.get("x-docker-container-path-stat")
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as err:
            if "not a directory" in str(err.explanation):  # a path below a file
                return None
            raise UnsafeInputError(f"image path {path}: {err.explanation}") from None
        finally:
            response.close()
        return dict(decode_json_header(header)) if header else {"mode": 0}

    def _real_parents(
        self, container: Any, path: PurePosixPath, links: dict[PurePosixPath, str | None]
    ) -> PurePosixPath:
        """`path` with each symlinked directory on the way replaced by where it leads.

        The engine follows such links silently; the layer reader reports them, and a
        file reached through one must read as `via_symlink` whatever the source, so that
        sync refuses to patch through it alike. `links` memoizes the stats (shared parents).
        Each link is followed by its own target, hop by hop, so the 40-hop limit counts
        as in the layer reader (the stat header's `linkTarget` is the whole chain's end).
        """
        real, todo, hops = PurePosixPath("/"), list(path.parent.parts[1:]), 0
        while todo:
            candidate = real / todo.pop(0)
            if candidate not in links:
                is_link = _kind(self._stat(container, candidate)) == "symlink"
                links[candidate] = self._link_target(container, candidate) if is_link else None
            target = links[candidate]
            if target is None:
                real = candidate
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise UnsafeInputError(
                    f"image path {path}: more than {MAX_SYMLINK_HOPS} symlink hops"
                )
            real, todo = PurePosixPath("/"), [*follow_link(candidate, target).parts[1:], *todo]
        return real / path.name

    def _link_target(self, container: Any, link: PurePosixPath) -> str:
        chunks, _ = container.get_archive(str(link))
        return _link_of(b"".join(chunks), link)

    def _git_metadata(
        self, container: Any, git_dir: PurePosixPath, links: dict[PurePosixPath, str | None]
    ) -> dict[PurePosixPath, Any]:
        """The git dir's small metadata files, or the `gitdir:` file it is."""
        head = self._read_one(container, git_dir / "HEAD", links)
        if head is None:
            try:
                pointer = self._read_one(container, git_dir, links)
            except UnsafeInputError:  # a directory without HEAD: no git dir here
                return {}
            return {git_dir: pointer} if pointer else {}
        found = {git_dir / "HEAD": head}
        for name in GIT_FILES[1:]:
            if file := self._read_one(container, git_dir / name, links):
                found[git_dir / name] = file
        try:
            chunks, _ = container.get_archive(str(git_dir / "refs"))
        except docker.errors.NotFound:
            return found
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as tar:
            contents: dict[str, bytes] = {}
            for member in tar:
                source = member.linkname if member.islnk() else member.name
                if member.isreg():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    contents[member.name] = handle.read(MAX_FILE_BYTES)
                if (member.isreg() or member.islnk()) and source in contents:
                    path = git_dir / member.name
                    mode = stat.S_IMODE(member.mode) or 0o644
                    found[path] = ImageFile(path, contents[source], mode, path)
        return found

    def _read_one(
        self, container: Any, path: PurePosixPath, links: dict[PurePosixPath, str | None]
    ) -> ImageFile | None:
        current = self._real_parents(container, path, links)
        for _ in range(MAX_SYMLINK_HOPS + 1):  # the lookup, then one round per link followed
            try:
                chunks, info = container.get_archive(str(current))
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as err:  # e.g. a symlink loop the engine caught
                if "not a directory" in str(err.explanation):  # a path below a file
                    return None
                raise UnsafeInputError(
                    f"image path {path}: symlink hops: {err.explanation}"
                ) from None
            mode = int(info["mode"])
            if mode & (1 << 27):  # Go's os.ModeSymlink: the archive holds the link itself
                target = _link_of(b"".join(chunks), current)
                current = self._real_parents(container, follow_link(current, target), links)
                continue
            if mode & (1 << 31):  # Go's os.ModeDir
                raise UnsafeInputError(f"image path {path} is a directory in the image")
            if int(info["size"]) > MAX_FILE_BYTES:
                raise UnsafeInputError(
                    f"image path {path} is {info['size']} bytes, over the {MAX_FILE_BYTES} limit"
                )
            content = _single_regular_file(b"".join(chunks), current)
            return ImageFile(path, content, stat.S_IMODE(mode) or 0o644, current)
        raise UnsafeInputError(f"image path {path}: more than {MAX_SYMLINK_HOPS} symlink hops")


class Pinned(Protocol):
    """An image as a lock records it: its reference, the engine's id, and the digest
    (None when it was read without one) that `pinned` names."""

    @property
    def ref(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def pinned(self) -> str: ...


def local_image(client: Any, image: Pinned) -> str | None:
    """The engine's id of `image` (by its pinned reference or its id), if present."""
    for reference in (image.pinned, image.id):
        try:
            return str(client.images.get(reference).id)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError as err:
            raise UnreachableError(f"Docker daemon error looking up {reference}: {err}") from None
    return None


def pull_image(client: Any, image: Pinned) -> str:
    """Pull `image` by digest (never by a tag, which may have moved)."""
    if not image.digest:
        raise ImageError(
            f"image {image.ref} ({image.id}) is not in the local engine and the "
            "lock pins no digest to pull it by: load it, or use --runtime host"
        )
    try:
        return str(client.images.pull(image.pinned).id)
    except docker.errors.APIError as err:
        raise UnreachableError(f"pulling {image.pinned}: {err}") from None


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _kind(found: dict[str, Any] | None) -> PathKind:
    """A stat header's Go file mode as a PathKind."""
    if found is None:
        return "absent"
    mode = int(found["mode"])
    if mode & (1 << 27):  # Go's os.ModeSymlink
        return "symlink"
    if mode & (1 << 31):  # Go's os.ModeDir
        return "dir"
    if mode & _GO_SPECIAL:
        return "other"
    return "file"


def _link_of(archive: bytes, path: PurePosixPath) -> str:
    """The target of the one symlink member the engine archived for `path`."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        members = tar.getmembers()
    if len(members) != 1 or not members[0].issym() or members[0].name != path.name:
        raise UnsafeInputError(f"image path {path}: unexpected archive from the engine")
    return members[0].linkname


def _single_regular_file(archive: bytes, path: PurePosixPath) -> bytes:
    """Accept exactly one regular-file member named like the request."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        members = tar.getmembers()
        if len(members) != 1 or not members[0].isreg() or members[0].name != path.name:
            raise UnsafeInputError(f"image path {path}: unexpected archive from the engine")
        extracted = tar.extractfile(members[0])
        assert extracted is not None
        return extracted.read(MAX_FILE_BYTES + 1)
