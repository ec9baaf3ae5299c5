"""Methods and tasks are found through the entry-point groups `editbench.methods` / `editbench.tasks`.

Built-ins register exactly like third-party plug-ins (see pyproject.toml). Entry points are lazy:
a plug-in's module is imported only when it is used, so `editbench --help` stays fast, and
`editbench list` reads each plug-in's one-line `description` from its source without importing it.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
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
    """(name, one-line description) of every registered plug-in of `kind`.

    The description is read from the class's source (`description = "..."`) without importing the
    plug-in (nor torch); a plug-in whose class does not state it as a literal (e.g. inherits it) is
    imported to ask it."""
    rows = []
    for name, ep in available(kind).items():
        module, _, attr = ep.value.partition(":")
        text = source_description(module.strip(), attr.strip())
        if text is None:
            try:
                text = load(kind, name).description or ""
            except EditbenchError as exc:
                text = f"unavailable: {exc}"
        rows.append((name, text))
    return rows


def _find_source(module: str) -> Any:
    """The module spec of `module`, found without importing it or its parent packages (but the first)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for depth in range(len(rest)):
            if spec is None or not spec.submodule_search_locations:
                return None
            name = ".".join([top, *rest[: depth + 1]])
            path = list(spec.submodule_search_locations)
            # Ask the import system's finders (an editable install maps packages to other folders).
            spec = next(filter(None, (getattr(finder, "find_spec", lambda *_: None)(name, path)
                                      for finder in sys.meta_path)), None)
    except (ImportError, ValueError):
        return None
    return spec


def source_description(module: str, attr: str, hops: int = 4) -> str | None:
    """The literal `description` of class `attr` in `module`'s source (following `from x import attr`
    re-exports up to `hops` times); None when the class body does not assign one as a string."""
    spec = _find_source(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                value = getattr(stmt, "value", None)
                if (any(isinstance(t, ast.Name) and t.id == "description" for t in targets)
                        and isinstance(value, ast.Constant) and isinstance(value.value, str)):
                    return value.value
            return None
        if isinstance(node, ast.ImportFrom) and hops > 0:
            for alias in node.names:
                if (alias.asname or alias.name) == attr:
                    source = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                        if node.level else node.module
                    return source_description(source, alias.name, hops - 1) if source else None
    return None


def create(kind: str, name: str, overrides: dict[str, Any] | None = None, **kwargs) -> Any:
    """An instance of the plug-in `name` with its config dataclass overridden by `overrides`."""
    from editbench.config import build_config

    cls = load(kind, name)
    return cls(build_config(cls.Config, overrides or {}, owner=f"{kind} {name}"), **kwargs)
