"""Splitting an ordered sequence of problems into pages (figures) or tables (columns)."""

from __future__ import annotations

import functools
from collections.abc import Callable


def paginate(groups: list[list[str]], size: Callable[[list[str]], float], limit: float,
             waste: Callable[[list[str]], float] | None = None) -> list[list[str]]:
    """Consecutive items in as few parts as keep ``size(part) <= limit``; among the splits
    into that many parts, the one that breaks fewest ``groups`` (runs of alike items), then
    the one that leaves least ``waste`` (empty slots of a grid of panels, say) in the parts
    before the last, so that a page is full before the next begins, then the one whose
    largest part is smallest. An item too large on its own gets a part of its own."""
    items = [item for group in groups for item in group]
    group_of = {item: i for i, group in enumerate(groups) for item in group}
    count = len(items)
    if count == 0:
        return []

    @functools.cache
    def measure(start: int, stop: int) -> float:
        return size(items[start:stop])

    @functools.cache
    def best(start: int, parts: int
             ) -> tuple[tuple[int, float, float], tuple[int, ...]] | None:
        """((groups broken, waste before the last part, largest part), part ends) of
        items[start:] in ``parts`` parts."""
        if start == count:
            return ((0, 0.0, 0.0), ()) if parts == 0 else None
        if parts == 0:
            return None
        found = None
        for stop in range(start + 1, count + 1):
            if stop > start + 1 and measure(start, stop) > limit:
                break
            rest = best(stop, parts - 1)
            if rest is None:
                continue
            broken = int(stop < count and group_of[items[stop - 1]] == group_of[items[stop]])
            wasted = waste(items[start:stop]) if waste is not None and stop < count else 0.0
            cost = (rest[0][0] + broken, rest[0][1] + wasted,
                    max(rest[0][2], measure(start, stop)))
            if found is None or cost < found[0]:
                found = (cost, (stop, *rest[1]))
        return found

    parts = 1
    while (split := best(0, parts)) is None:
        parts += 1
    ends = split[1]
    return [items[a:b] for a, b in zip((0, *ends[:-1]), ends, strict=True)]
