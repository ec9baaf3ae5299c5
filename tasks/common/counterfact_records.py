"""CounterFact (Meng et al. 2022) records as edit requests, from both layouts in use (shared by the
`counterfact-*` tasks and the `facts` task on your own file).

- MEND / EasyEdit / KnowledgeSpread (`counterfact-{train,edit}.json`): `prompt`, `subject`,
  `target_new`, `ground_truth`, `rephrase_prompt`, `locality_prompt`, `locality_ground_truth`;
- ROME / MEMIT (`counterfact.json`): `requested_rewrite` {`prompt` with `{}` for the subject,
  `subject`, `target_new.str`, `target_true.str`}, `paraphrase_prompts`, `neighborhood_prompts`
  (whose answer is the true target, as MEMIT scores them): all of them are kept (2 paraphrases and
  10 neighbourhood prompts per record in MEMIT's file), as MEMIT reports its scores. The MEND layout
  (the local default files) has one rephrase and one locality prompt per record.
"""
from __future__ import annotations

from editbench.api import EditRequest
from editbench.tasks.common.records import Record


def _rome_request(record: Record) -> EditRequest:
    rewrite = record.fields["requested_rewrite"]
    if not isinstance(rewrite, dict):
        raise record.fail("requested_rewrite", "is not an object")
    inner = Record(rewrite, record.where + " requested_rewrite")
    template, subject = inner.text("prompt"), inner.text("subject")
    if "{}" not in template:
        raise inner.fail("prompt", "has no '{}' for the subject")
    new, true = rewrite.get("target_new"), rewrite.get("target_true")
    for key, value in (("target_new", new), ("target_true", true)):
        if not isinstance(value, dict) or not isinstance(value.get("str"), str) or not value["str"].strip():
            raise inner.fail(key, "is missing or has no 'str'")
    paraphrases = record.texts("paraphrase_prompts")
    neighbours = record.texts("neighborhood_prompts")
    return EditRequest(
        id=f"counterfact-{record.fields.get('case_id', record.where.rsplit(' ', 1)[-1])}",
        prompt=template.replace("{}", subject),
        target=new["str"].strip(),
        equivalents=tuple(p.strip() for p in paraphrases),
        unrelated=tuple((n.strip(), true["str"].strip()) for n in neighbours),
        subject=subject,
        original=true["str"].strip(),
    )


def _mend_request(record: Record) -> EditRequest:
    prompt, subject = record.text("prompt"), record.text("subject")
    if subject not in prompt:
        raise record.fail("subject", f"{subject!r} does not occur in the prompt")
    return EditRequest(
        id=f"counterfact-{record.fields.get('case_id', record.where.rsplit(' ', 1)[-1])}",
        prompt=prompt.strip(),
        target=record.text("target_new").strip(),
        equivalents=(record.text("rephrase_prompt").strip(),),
        unrelated=((record.text("locality_prompt").strip(), record.text("locality_ground_truth").strip()),),
        subject=subject,
        original=record.text("ground_truth").strip(),
    )


def parse_request(record: Record) -> EditRequest:
    """A request from a record of either layout; a bad record raises naming its location and field."""
    if "requested_rewrite" in record.fields:
        return _rome_request(record)
    return _mend_request(record)
