"""The orders layer tars list their entries in, checked entry by entry as a layer streams.

Docker's legacy builder writes an image's first layer in directory-walk order (paths
compared component by component: `a/b` before `a.b`) and later layers in byte order of
the whole path (`a.b` before `a/b`); BuildKit walks. Whiteouts are written where the
path they delete sorts, opaque markers right after their directory, so both are keyed
by that path. A reader may abandon a layer once an entry sorts after everything it
wants in every order the layer has kept so far: nothing it wants can follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

ORDERS: dict[str, Callable[[str], Any]] = {
    "byte": lambda path: path.encode(),
    "walk": lambda path: tuple(part.encode() for part in path.split("/") if part),
}
_END: dict[str, Callable[[Any], Any]] = {
    "byte": lambda key: key + b"/\xff",
    "walk": lambda key: (*key, b"\xff"),
}


def bound(path: str, subtree: bool) -> dict[str, Any]:
    """Per order, the largest key that can decide `path` (or everything under it)."""
    keys = {name: key(path) for name, key in ORDERS.items()}
    return {name: _END[name](k) for name, k in keys.items()} if subtree else keys


def highest(bounds: Iterable[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in bounds:
        for name, key in item.items():
            if name not in found or key > found[name]:
                found[name] = key
    return found


class OrderCheck:
    """Which candidate orders the entries seen so far still follow (ties allowed)."""

    def __init__(self) -> None:
        self.alive: dict[str, Any] = dict.fromkeys(ORDERS)

    def see(self, path: str) -> bool:
        """Record an entry keyed by `path`; False once no candidate order holds."""
        for name in list(self.alive):
            key = ORDERS[name](path)
            last = self.alive[name]
            if last is not None and key < last:
                del self.alive[name]
            else:
                self.alive[name] = key
        return bool(self.alive)

    def beyond(self, path: str, limit: dict[str, Any]) -> bool:
        """`path` sorts after `limit` in every order still held (and one is held)."""
        return bool(self.alive) and all(ORDERS[o](path) > limit[o] for o in self.alive)


def decided(stop: str, orders: Iterable[str], item: dict[str, Any]) -> bool:
    """A layer abandoned at entry `stop` (in `orders`) has shown all that decides `item`."""
    names = list(orders)
    return bool(names) and all(item[o] < ORDERS[o](stop) for o in names)
