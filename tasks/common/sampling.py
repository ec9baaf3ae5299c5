"""Deterministic splits and seeded sampling of records."""
from __future__ import annotations

import random
from typing import Sequence, TypeVar

from editbench.errors import EditbenchError

T = TypeVar("T")


def split_records(records: Sequence[T], sizes: dict[str, int], seed: int = 0) -> dict[str, list[T]]:
    """Shuffle once with `seed` and cut consecutive parts of the given sizes (the rest is ignored)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    parts, start = {}, 0
    for split, size in sizes.items():
        parts[split] = [records[i] for i in order[start:start + size]]
        start += size
    return parts


def sample(items: Sequence[T], count: int, seed: int, what: str = "split") -> list[T]:
    """`count` distinct items drawn with `seed` (the first `count` of one seeded permutation)."""
    if count < 1 or count > len(items):
        raise EditbenchError(f"--edits {count} is out of range: the {what} has {len(items)} requests (1..{len(items)})")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order[:count]]
