"""Stage 4: which merge commits are ancestors of which image commits.

One pass over the commit graph answers every (commit, tip) pair at once: each
commit carries a bitmask of the target commits it descends from, so 100 tips
x 50 PRs cost one `git rev-list` instead of 5,000 `merge-base --is-ancestor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def ancestry_masks(
    parent_lines: Iterable[str], targets: Sequence[str], tips: Sequence[str]
) -> dict[str, frozenset[str]]:
    """Answer containment from `rev-list --topo-order --reverse --parents` output.

    `parent_lines` must list parents before children ("<commit> <parent>...").
    Commits absent from the listing contain nothing.
    """
    bit = {sha: 1 << i for i, sha in enumerate(dict.fromkeys(targets))}
    masks: dict[str, int] = {}
    for line in parent_lines:
        commit, *parents = line.split()
        mask = bit.get(commit, 0)
        for parent in parents:
            mask |= masks.get(parent, 0)
        masks[commit] = mask
    by_bit = {b: sha for sha, b in bit.items()}
    result: dict[str, frozenset[str]] = {}
    for tip in tips:
        mask = masks.get(tip, 0)
        result[tip] = frozenset(sha for b, sha in by_bit.items() if mask & b)
    return result
