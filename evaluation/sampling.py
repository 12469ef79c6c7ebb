"""Stratified samples of query images: even over the classes, the same for a seed."""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence


def stratified_sample(
    ids_by_class: Mapping[Hashable, Sequence[int]], n: int | None, seed: int
) -> list[int]:
    """At most n ids, spread over the classes as evenly as they allow, the same for a seed.

    Each class's ids and the order of the classes are shuffled by the seed, then ids are dealt
    round-robin: class counts differ by at most one (unless a class runs out), and which
    classes get the extra ones is itself seeded. None or n >= the total: every id.
    """
    rng = random.Random(seed)
    classes = sorted(ids_by_class, key=str)
    pools = {c: sorted(ids_by_class[c]) for c in classes}
    total = sum(len(p) for p in pools.values())
    if n is None or n >= total:
        return sorted(i for p in pools.values() for i in p)
    for c in classes:
        rng.shuffle(pools[c])
    rng.shuffle(classes)
    taken: list[int] = []
    depth = 0
    while len(taken) < n:
        for c in classes:
            if depth < len(pools[c]):
                taken.append(pools[c][depth])
                if len(taken) == n:
                    break
        depth += 1
    return sorted(taken)
