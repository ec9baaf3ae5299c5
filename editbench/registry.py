"""Methods and tasks are found through the entry-point groups `editbench.methods` / `editbench.tasks`.

Built-ins register exactly like third-party plug-ins (see pyproject.toml). Entry points are lazy:
a plug-in's module is imported only when it is used, so `editbench --help` stays fast.
"""
from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from editbench.errors import EditbenchError

GROUPS = {"method": "editbench.methods", "task": "editbench.tasks"}


def available(kind: str) -> dict[str, EntryPoint]:
    """Entry points of `kind` ('method' or 'task') by name; duplicate names are an error."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        if ep.name in found and found[ep.name].value != ep.value:
            raise EditbenchError(f"two {kind}s are registered as {ep.name!r}: {found[ep.name].value} and {ep.value}")
        found[ep.name] = ep
    return dict(sorted(found.items()))


def load(kind: str, name: str) -> type:
    """The class registered as `name`, checked against the contract."""
    from editbench import api

    eps = available(kind)
    if name not in eps:
        known = ", ".join(eps) or "none"
        close = difflib.get_close_matches(name, eps, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EditbenchError(f"unknown {kind} {name!r}{hint}; known {kind}s: {known}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plug-in must not look like a missing one
        raise EditbenchError(f"{kind} {name!r} failed to load from {eps[name].value}: {type(exc).__name__}: {exc}") from None
    base = api.Method if kind == "method" else api.Task
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise EditbenchError(f"{kind} {name!r} ({eps[name].value}) is not a subclass of editbench.api.{base.__name__}")
    return cls


def describe(kind: str) -> list[tuple[str, str]]:
    """(name, one-line description) of every registered plug-in of `kind`."""
    rows = []
    for name in available(kind):
        try:
            rows.append((name, load(kind, name).description or ""))
        except EditbenchError as exc:
            rows.append((name, f"unavailable: {exc}"))
    return rows


def create(kind: str, name: str, overrides: dict[str, Any] | None = None, **kwargs) -> Any:
    """An instance of the plug-in `name` with its config dataclass overridden by `overrides`."""
    from editbench.config import build_config

    cls = load(kind, name)
    return cls(build_config(cls.Config, overrides or {}, owner=f"{kind} {name}"), **kwargs)
