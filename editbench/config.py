"""Config dataclasses from defaults plus `--set key=value` overrides (unknown keys are errors).

Every field may carry a range check in its metadata (`metadata={"help": ..., "check": positive}`);
`build_config` runs them on the final values (defaults, presets and overrides alike), then the
dataclass's own `validate()` for rules across fields, so a bad setting stops the run before any
work, with one line naming the field, its value and what was expected.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Callable

from editbench.errors import EditbenchError


def parse_sets(items: typing.Iterable[str]) -> dict[str, str]:
    """`["lr=1e-4", "method.steps=10"]` -> `{"lr": "1e-4", "method.steps": "10"}`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EditbenchError(f"bad --set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _convert(raw: Any, kind: Any, key: str, owner: str) -> Any:
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in (int, float, str):
            return kind(raw)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            if raw.lower() in ("none", "null", ""):
                return None
            return _convert(raw, args[0], key, owner)
        if origin in (list, tuple) or kind in (list, tuple):
            value = json.loads(raw) if raw.startswith("[") else [v for v in raw.split(",") if v]
            inner = args[0] if args else str
            items = [_convert(str(v), inner, key, owner) for v in value]
            return tuple(items) if (origin or kind) is tuple else items
        return json.loads(raw)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise EditbenchError(f"bad --set {key}={raw!r} for {owner}: expected {getattr(kind, '__name__', kind)}") from None


@dataclasses.dataclass(frozen=True)
class Check:
    """A range check of a config field: `test(value)` must hold; `expected` says what is allowed."""

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float) -> Check:
    """A finite number >= `low` (for an int field: an integer >= low)."""
    return Check(lambda v: _number(v) and v >= low, f"a finite number >= {low}")


def greater_than(low: float) -> Check:
    return Check(lambda v: _number(v) and v > low, f"a finite number > {low}")


def between(low: float, high: float) -> Check:
    return Check(lambda v: _number(v) and low <= v <= high, f"a finite number in [{low}, {high}]")


def one_of(*choices: Any) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


positive = greater_than(0)  # learning rates, step sizes, coefficients that must not vanish
non_negative = at_least(0)
finite = Check(_number, "a finite number")
count = at_least(1)  # sizes, epochs, steps


def validate(config: Any, owner: str, overridden: typing.Collection[str] = ()) -> Any:
    """Run each field's `check` and the config's `validate()`; `EditbenchError` on the first failure."""
    for f in dataclasses.fields(config):
        check = f.metadata.get("check")
        value = getattr(config, f.name)
        if check is not None and not check(value):
            origin = "--set " if f.name in overridden else ""
            raise EditbenchError(f"bad {origin}{f.name}={value!r} for {owner}: expected {check.expected}")
    if callable(getattr(config, "validate", None)):
        try:
            config.validate()
        except (ValueError, TypeError) as exc:
            raise EditbenchError(f"bad settings for {owner}: {exc}") from None
    return config


def build_config(config_cls: type, overrides: dict[str, Any], owner: str) -> Any:
    """`config_cls(**defaults)` with `overrides` converted to the fields' types, range-checked."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise EditbenchError(f"bad --set {unknown[0]!r}: {owner} has no such option (options: {', '.join(sorted(fields)) or 'none'})")
    values = {k: _convert(v, hints[k], k, owner) for k, v in overrides.items()}
    try:
        config = config_cls(**values)
    except (ValueError, TypeError) as exc:
        raise EditbenchError(f"bad --set for {owner}: {exc}") from None
    return validate(config, owner, overrides)


def describe_options(config_cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help text) of every field of a config dataclass."""
    out = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}


def split_overrides(sets: dict[str, str], method_cls: type, task_cls: type) -> tuple[dict, dict]:
    """Route `method.KEY` / `task.KEY` explicitly, and a bare KEY to the one config that has it
    (a bare KEY that both configs have is an error: it must say which)."""
    method_fields = {f.name for f in dataclasses.fields(method_cls.Config)}
    task_fields = {f.name for f in dataclasses.fields(task_cls.Config)}
    method, task = {}, {}
    for key, value in sets.items():
        scope, dot, name = key.partition(".")
        if dot and scope in ("method", "task"):
            (method if scope == "method" else task)[name] = value
        elif key in method_fields and key in task_fields:
            raise EditbenchError(f"ambiguous --set {key!r}: both {method_cls.name!r} and {task_cls.name!r} have this option "
                                 f"(expected method.{key} or task.{key})")
        elif key in method_fields:
            method[key] = value
        elif key in task_fields:
            task[key] = value
        else:
            options = sorted(method_fields | task_fields)
            raise EditbenchError(f"bad --set {key!r}: neither {method_cls.name!r} nor {task_cls.name!r} has this option "
                                 f"(options: {', '.join(options)})")
    return method, task
