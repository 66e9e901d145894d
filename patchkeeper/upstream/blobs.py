"""The upstream blobs that local diffs' `index` lines name, found in the mirror.

A diff made from upstream code names, per file, the blob it was made from (`git diff`
abbreviates the id, `--full-index` does not). An id is looked up among the blobs the file's
path has held in the mirror's history, read from trees alone: an abbreviated id cannot be
fetched, and an id that history lacks names code upstream never had. Two blobs that share
an abbreviated id are a guess, never taken. The blobs found are fetched in one request
where the partial clone lacks them, and each one's bytes must hash to its id: the mirror
is a cache on disk, not trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from patchkeeper.upstream.mirror import GitMirror
from patchkeeper.upstream.model import UpstreamBlob, is_blob

Named = tuple[PurePosixPath, str]


def find_blobs(mirror: GitMirror, named: Sequence[Named]) -> dict[Named, UpstreamBlob]:
    """Each (repository path, blob id) as upstream has it; see the module docstring."""
    if not named:
        return {}
    history = mirror.blob_history(sorted({path for path, _ in named}))
    found: dict[Named, UpstreamBlob] = {}
    chosen: dict[Named, str] = {}
    for path, short in named:
        candidates = sorted(blob for blob in history[path] if blob.startswith(short))
        if len(candidates) == 1:
            chosen[(path, short)] = candidates[0]
        elif candidates:
            found[(path, short)] = UpstreamBlob(
                None,
                f"the index line's blob {short} is ambiguous: {path} has held "
                f"{', '.join(candidates)} upstream; matching exactly (`git diff --full-index` "
                "names the blob in full)",
            )
        else:
            found[(path, short)] = UpstreamBlob(None)  # code upstream never had
    mirror.fetch_blobs({blob: history[path][blob] for (path, _), blob in chosen.items()})
    contents = mirror.cat_file(list(chosen.values()), "the blobs local diffs name")
    for key, content in zip(chosen, contents, strict=True):
        blob = chosen[key]
        if content is not None and is_blob(content, blob):
            found[key] = UpstreamBlob(content)
        else:
            what = "is not that blob" if content is not None else "cannot be read"
            found[key] = UpstreamBlob(
                None,
                f"the mirror's copy of blob {blob} {what}: {mirror.path} is damaged "
                "(delete it to fetch it anew); matching exactly",
            )
    return found
