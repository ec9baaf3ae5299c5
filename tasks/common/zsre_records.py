"""zsRE records (Levy et al. 2017) as edit requests, from the layouts in use (shared by the `zsre-*`
tasks and the `facts` task on your own file).

- MEND / KnowledgeSpread / MEMIT `zsre_mem.json` (the same fields): `src`, `rephrase`, `answers`,
  `alt`, `loc` (an NQ question prefixed `nq question: `), `loc_ans`, `subject`;
- MEND's KILT files (`structured_zeroshot-{train,dev}-new_annotated_final.jsonl`, the paper's
  244,173 / 27,644 split): `input`, `output[*].answer`, `filtered_rephrases`, `alternatives`;
  they carry no NQ question, so the unrelated tuple comes from NQ-open (see `ZsreTask`).
"""
from __future__ import annotations

from dataclasses import dataclass

from editbench.api import EditRequest
from editbench.errors import EditbenchError
from editbench.tasks.common.nq import as_prompt
from editbench.tasks.common.records import Record

TARGETS = ("answers", "alt")


@dataclass(frozen=True)
class ZsreFact:
    question: str
    answer: str  # gold answer (answers[0])
    rephrase: str
    alt: str | None
    unrelated: tuple[str, str] | None  # (NQ prompt, answer) when the record carries one
    subject: str | None


def parse_fact(record: Record) -> ZsreFact:
    """One zsRE record of either layout; a bad record raises naming its location and field.

    An empty or missing `alt` is allowed (one of the 800 local records has none): such a record
    cannot be edited to `alt` and `ZsreTask` skips it when the target is 'alt'."""
    fields = record.fields
    if "src" in fields:
        question, answer = record.text("src"), record.texts("answers")[0]
        rephrase, alt = record.text("rephrase"), record.optional_text("alt")
        loc, loc_ans = record.optional_text("loc"), record.optional_text("loc_ans")
        if (loc is None) != (loc_ans is None) or (loc is not None and not (loc.strip() and loc_ans.strip())):
            raise record.fail("loc_ans" if loc else "loc", "must come with a non-empty 'loc'/'loc_ans' pair")
        unrelated = (as_prompt(loc), loc_ans.strip()) if loc else None
    elif "input" in fields:
        question = record.text("input")
        output = fields.get("output")
        answers = [o.get("answer") for o in output] if isinstance(output, list) and all(isinstance(o, dict) for o in output) else []
        if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise record.fail("output", "is missing or has no answers (KILT layout: output[*].answer)")
        answer, rephrase = answers[0], record.texts("filtered_rephrases")[0]
        alternatives = fields.get("alternatives") or []
        alt = alternatives[0] if isinstance(alternatives, list) and alternatives and isinstance(alternatives[0], str) else None
        unrelated = None
    else:
        raise record.fail("src", "is missing (expected MEND 'src' or KILT 'input')")
    subject = fields.get("subject") if isinstance(fields.get("subject"), str) else None
    alt = alt.strip() if alt and alt.strip() else None
    return ZsreFact(question.strip(), answer.strip(), rephrase.strip(), alt, unrelated, subject)


def to_request(request_id: str, fact: ZsreFact, target: str, unrelated: list[tuple[str, str]]) -> EditRequest:
    """Edit the question to the gold answer (`target='answers'`, the paper) or to `alt`."""
    if target not in TARGETS:
        raise EditbenchError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    return EditRequest(
        id=request_id,
        prompt=fact.question,
        target=fact.answer if target == "answers" else fact.alt,
        equivalents=(fact.rephrase,),
        unrelated=tuple(unrelated),
        subject=fact.subject,
        original=fact.answer,
    )
