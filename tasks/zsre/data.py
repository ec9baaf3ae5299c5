"""zsRE records in the MEND format: `src`, `rephrase`, `answers`, `alt`, `loc`, `loc_ans`, `subject`."""
from __future__ import annotations

import json
from pathlib import Path

from editbench.api import EditRequest
from editbench.data import DataFile, first_json_records
from editbench.errors import EditbenchError

ZSRE_800 = DataFile(
    path="zsre/zsre_mend_train_800.json",
    sha256="b4ee6022a6af72816a44dfa0f7f9e800921d71ef4254f51d6d9d6c60c86a2406",
    url="https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/main/data/zsre/zsre_mend_train-1k.json",
    license="none stated by the source; zsRE derives from WikiReading/Wikidata",
    transform=first_json_records(800),
)

REQUIRED = {"src": str, "rephrase": str, "answers": list, "alt": str, "loc": str, "loc_ans": str}


def load_records(path: Path) -> list[dict]:
    """Records of a MEND-format zsRE file (a JSON array or JSON Lines), each validated."""
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as exc:
        raise EditbenchError(f"{path}: not valid JSON ({exc})") from None
    for index, record in enumerate(records):
        for key, kind in REQUIRED.items():
            if not isinstance(record.get(key), kind) or (kind is list and not record[key]):
                raise EditbenchError(f"{path}: record {index} has a missing or bad field {key!r}")
    return records


def to_request(index: int, record: dict, target: str) -> EditRequest:
    """A request editing `src` to the gold answer (`target='answers'`) or the alternative (`'alt'`)."""
    answer = record["answers"][0] if target == "answers" else record["alt"]
    loc = record["loc"].removeprefix("nq question: ")
    return EditRequest(
        id=f"zsre-{index}",
        prompt=record["src"],
        target=answer,
        equivalents=(record["rephrase"],),
        unrelated=((loc[:1].upper() + loc[1:] + "?", record["loc_ans"]),),
        subject=record.get("subject"),
        original=record["answers"][0],
    )
