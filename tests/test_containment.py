from patchkeeper.containment import ancestry_masks

# a - b - c - m - e      (main; m merges the side branch x - y)
#      \         /
#       x ----- y
GRAPH = ["a", "b a", "x b", "c b", "y x", "m c y", "e m"]


def test_each_tip_sees_exactly_its_ancestors() -> None:
    found = ancestry_masks(GRAPH, ["b", "x", "c", "e", "zzz"], ["c", "y", "e", "nope"])
    assert found["c"] == {"b", "c"}
    assert found["y"] == {"b", "x"}
    assert found["e"] == {"b", "x", "c", "e"}
    assert found["nope"] == frozenset()


def test_no_targets_or_tips() -> None:
    assert ancestry_masks(GRAPH, [], ["e"]) == {"e": frozenset()}
    assert ancestry_masks(GRAPH, ["a"], []) == {}
