"""FEVER claims (Thorne et al. 2018): the local `paper_dev` file, or the paper's KILT split by path.

Layouts accepted, record by record:
- FEVER 1.0 (`paper_dev.jsonl`): `claim`, `label` in SUPPORTS / REFUTES / NOT ENOUGH INFO;
- KILT / KnowledgeEditor / MEND (`fever-{train,dev}-kilt.jsonl`): `input`, `output[0].answer`,
  and the paraphrases in `filtered_rephrases` (or `rephrases`) when present;
- the official MALMEN code's records: `prompt`, `label` (or `answer`), `equiv_prompt`.
NOT ENOUGH INFO claims are dropped (the paper's FEVER is binary). An edit flips the gold label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from editbench.api import EditRequest
from editbench.data import DataFile
from editbench.tasks.common.records import Record, read_records

FEVER_DEV = DataFile(
    path="fever/paper_dev.jsonl",
    sha256="4cb464f53160f6a262aec17c60714125f773670b35eefbb0bb20a556b1847c36",
    url="https://raw.githubusercontent.com/zixianma/interactive-chains/main/data/paper_dev.jsonl",
    license="CC BY-SA 3.0 (FEVER, Wikipedia-derived)",
)

LABELS = ("REFUTES", "SUPPORTS")  # label id 0, 1
NOT_ENOUGH_INFO = "NOT ENOUGH INFO"


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    label: str  # one of LABELS
    rephrases: tuple[str, ...] = ()


def parse_claim(record: Record) -> Claim | None:
    """A binary claim, or None for NOT ENOUGH INFO; a malformed record raises naming its field."""
    fields = record.fields
    if "claim" in fields:
        text, label_field = record.text("claim"), "label"
        label = record.text("label")
    elif "input" in fields:
        text, label_field = record.text("input"), "output"
        output = fields.get("output")
        if not isinstance(output, list) or not output or not isinstance(output[0], dict) \
                or not isinstance(output[0].get("answer"), str):
            raise record.fail("output", "is missing or has no answer (KILT layout: output[0].answer)")
        label = output[0]["answer"]
    elif "prompt" in fields:
        text = record.text("prompt")
        label_field = "label" if "label" in fields else "answer"
        label = record.text(label_field)
    else:
        raise record.fail("claim", "is missing (expected 'claim', KILT 'input' or MALMEN 'prompt')")
    label = label.strip().upper()
    if label == NOT_ENOUGH_INFO:
        return None
    if label not in LABELS:
        raise record.fail(label_field, f"holds {label!r}, not one of {', '.join(LABELS + (NOT_ENOUGH_INFO,))}")
    rephrases: list[str] = []
    for key in ("filtered_rephrases", "rephrases", "equiv_prompt"):
        if key in fields:
            value = fields[key]
            rephrases = [value] if isinstance(value, str) else value
            if not isinstance(rephrases, list) or not all(isinstance(r, str) for r in rephrases):
                raise record.fail(key, "is not a list of strings")
            break
    claim_id = str(fields.get("id", record.where.rsplit(" ", 1)[-1]))
    return Claim(claim_id, text.strip(), label, tuple(r.strip() for r in rephrases if r.strip()))


def load_claims(source: str | Path, split: str = "train") -> list[Claim]:
    """Binary claims of a file (or hub split), validated record by record."""
    return [c for c in map(parse_claim, read_records(source, split)) if c is not None]


def flipped(label: str) -> str:
    return LABELS[1 - LABELS.index(label)]


def to_request(claim: Claim, unrelated: Claim, max_equivalents: int = 1) -> EditRequest:
    """Edit `claim` to the opposite of its gold label; GS on its rephrases (none: GS unavailable);
    LS on another claim with its gold label."""
    return EditRequest(
        id=f"fever-{claim.id}",
        prompt=claim.text,
        target=flipped(claim.label),
        equivalents=claim.rephrases[:max_equivalents],
        unrelated=((unrelated.text, unrelated.label),),
        original=claim.label,
    )
