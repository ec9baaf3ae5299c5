"""Natural Questions open (Kwiatkowski et al. 2019; NQ-open of Lee et al. 2019): extra unrelated tuples."""
from __future__ import annotations

from pathlib import Path

from editbench.data import DataFile, resolve
from editbench.tasks.common.records import read_records

_NQ_URL = "https://raw.githubusercontent.com/google-research-datasets/natural-questions/master/nq_open/"
NQ_OPEN_DEV = DataFile(
    path="nq/NQ-open.dev.jsonl",
    sha256="f15567f38099f3615f5b8a685c0aef449c11ad90d3da3735e8d1b98115b40616",
    url=_NQ_URL + "NQ-open.dev.jsonl",
    license="CC BY-SA 3.0 (data), Apache-2.0 (repository)",
)
NQ_OPEN_EFFICIENTQA = DataFile(
    path="nq/NQ-open.efficientqa.dev.1.1.jsonl",
    sha256="0ad45e2fa9fd32d10b3cf08c63e6d22f97ba1a0ce44ea98040f4c18bce7e268d",
    url=_NQ_URL + "NQ-open.efficientqa.dev.1.1.jsonl",
    license="CC BY-SA 3.0 (data), Apache-2.0 (repository)",
)


def as_prompt(question: str) -> str:
    """'who wrote x' -> 'Who wrote x?' (the form of zsRE's `loc` prompts, as in MALMEN's code)."""
    question = question.strip().removeprefix("nq question: ").strip()
    return question[:1].upper() + question[1:] + ("" if question.endswith("?") else "?")


def load_nq(path: Path) -> list[tuple[str, str]]:
    """(question prompt, first gold answer) of each NQ-open record, validated."""
    pairs = []
    for record in read_records(path):
        pairs.append((as_prompt(record.text("question")), record.texts("answer")[0]))
    return pairs


class NQPairs:
    """Mixin of a task that draws extra unrelated tuples from NQ-open (it has `data_dir` and a
    `_files` dict of the data files it read): `_nq_pairs()` loads them once and records the file."""

    _nq: list[tuple[str, str]] | None = None

    def _nq_pairs(self) -> list[tuple[str, str]]:
        if self._nq is None:
            path = resolve(NQ_OPEN_DEV, self.data_dir)
            self._files[NQ_OPEN_DEV.path] = path
            self._nq = load_nq(path)
        return self._nq
