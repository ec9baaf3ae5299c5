"""The `layers` setting every method has: which modules to edit instead of the task's choice."""
from __future__ import annotations

import re
from typing import Sequence

from torch import nn

from editbench.errors import EditbenchError

_BLOCK_INDEX = re.compile(r"\.(\d+)\.")


def _templates(names: Sequence[str]) -> list[tuple[str, str]]:
    """(prefix, suffix) around the block index of each name, deduplicated in order."""
    out: list[tuple[str, str]] = []
    for name in names:
        match = _BLOCK_INDEX.search(name)
        if match is None:
            raise EditbenchError(f"cannot read a block index from module {name!r}: give full module names in layers")
        template = (name[: match.start() + 1], name[match.end() - 1:])
        if template not in out:
            out.append(template)
    return out


def select_modules(default: Sequence[str], spec: str, model: nn.Module) -> list[str]:
    """Module names to edit.

    spec '' keeps `default` (the task's choice for the method's role); '20,21' edits the same
    sub-layers as `default` at blocks 20 and 21; 'a.b.c,d.e.f' names the modules outright.
    """
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        return list(default)
    if all(item.isdigit() for item in items):
        names = [prefix + item + suffix for item in items for prefix, suffix in _templates(default)]
    elif any(item.isdigit() for item in items):
        raise EditbenchError(f"layers {spec!r} mixes block indices and module names: give one or the other")
    else:
        names = items
    known = dict(model.named_modules())
    for name in names:
        if name not in known:
            raise EditbenchError(f"layers {spec!r}: the model has no module {name!r} "
                                 f"(the task's default for this method is {', '.join(default)})")
        if not hasattr(known[name], "weight"):
            raise EditbenchError(f"layers {spec!r}: module {name!r} has no weight to edit")
    if len(set(names)) != len(names):
        raise EditbenchError(f"layers {spec!r} names a module twice")
    return names
