"""Reading record files (JSON array, JSON Lines, or a `datasets` hub id) and validating fields.

Every loader goes through `read_records`, so a bad record is always reported the same way: the
file, the record (JSON Lines: its line number; JSON array: its index) and the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from editbench.errors import EditbenchError


@dataclass(frozen=True)
class Record:
    """One raw record and where it came from (`where` reads like 'file.jsonl line 12')."""

    fields: dict[str, Any]
    where: str

    def fail(self, field: str, problem: str = "is missing or has the wrong type") -> EditbenchError:
        return EditbenchError(f"{self.where}: field {field!r} {problem}")

    def text(self, field: str) -> str:
        """A non-empty string field."""
        value = self.fields.get(field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "is missing or not a non-empty string")
        return value

    def texts(self, field: str) -> list[str]:
        """A non-empty list of non-empty strings."""
        value = self.fields.get(field)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(field, "is missing or not a non-empty list of strings")
        return value

    def optional_text(self, field: str) -> str | None:
        value = self.fields.get(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(field, "is not a string")
        return value


def looks_like_hub_id(source: str) -> bool:
    """'owner/name' that is not an existing path: a `datasets` hub id."""
    return source.count("/") == 1 and not Path(source).expanduser().exists() and not source.startswith((".", "/", "~"))


def read_records(source: str | Path, split: str = "train") -> list[Record]:
    """Records of a local JSON array / JSON Lines file, or of split `split` of a hub data set."""
    if isinstance(source, str) and looks_like_hub_id(source):
        return _hub_records(source, split)
    path = Path(source).expanduser()
    if not path.is_file():
        raise EditbenchError(f"data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EditbenchError(f"{path}: not valid JSON ({exc})") from None
        records = [Record(row, f"{path} record {i}") for i, row in enumerate(rows)]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EditbenchError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
            records.append(Record(row, f"{path} line {number}"))
    for record in records:
        if not isinstance(record.fields, dict):
            raise EditbenchError(f"{record.where}: not a JSON object")
    return records


def _hub_records(name: str, split: str) -> list[Record]:
    import datasets

    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many kinds (connection, missing split, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EditbenchError(f"cannot load data set {name!r} split {split!r} ({first[:160]})") from None
    return [Record(dict(row), f"{name}[{split}] record {i}") for i, row in enumerate(rows)]


def parse_all(records: Iterable[Record], parse: Callable[[Record], Any]) -> list[Any]:
    """`parse` applied to each record; records it maps to None are dropped (e.g. NEI claims)."""
    return [item for item in map(parse, records) if item is not None]
