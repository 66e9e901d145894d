"""Containment rules that the graph in test_containment.py leaves open."""

import pytest

from patchkeeper.containment import ancestry_masks


def test_a_tip_outside_the_first_targets_history_does_not_contain_it() -> None:
    # a - b (main) and a - x (a side branch): x's tip sees only what it descends from.
    graph = ["a", "b a", "x a"]
    found = ancestry_masks(graph, ["b", "x"], ["b", "x", "a"])
    assert found == {"b": {"b"}, "x": {"x"}, "a": frozenset()}


@pytest.mark.parametrize("targets", [["c", "elsewhere"], ["elsewhere", "c"]])
def test_parents_missing_from_a_shallow_listing_contribute_nothing(targets: list[str]) -> None:
    # `rev-list` of a shallow clone names parents it never lists; whichever target comes
    # first, an unlisted parent never makes a tip contain it.
    found = ancestry_masks(["c gone", "d c other-gone"], targets, ["c", "d"])
    assert found == {"c": {"c"}, "d": {"c"}}


def test_duplicate_targets_count_once() -> None:
    found = ancestry_masks(["a", "b a"], ["a", "a", "b"], ["b"])
    assert found == {"b": {"a", "b"}}
