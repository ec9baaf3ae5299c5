"""The public Python API: load a model, edit facts into it, get the shifts and scores, revert, save.

    import editbench
    target = editbench.load("zsre-smollm2")                      # a task by name (its model is loaded)
    out = editbench.edit(target, [{"prompt": "Who wrote Hamlet?", "target": "Marlowe"}],
                         method="ft", settings={"epochs": 10})
    out.scores[0]["post"]["es"]; out.deltas                      # per-fact scores, {module: ΔW [d_out, d_in]}
    out.save("hamlet-edit"); out.revert()                        # keep the edit; take it back bit-exactly
    editbench.apply_edit(target.model, "hamlet-edit")            # later, in any process

`edit` runs the benchmark's own runner (`editbench.runner.execute`, with `write=False`), so its
record is the one `editbench run` would write. Methods that train an editor (MALMEN, MEND) train it
on the task's train split, or on `train_facts` (`with_training_facts`), the first time and reuse
the cached editor afterwards (their `checkpoint` setting).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from editbench.errors import EditbenchError

FACT_KEYS = ("prompt", "target", "rephrases", "subject", "unrelated", "id", "equivalents", "original")


@dataclass
class Loaded:
    """A task and the model it edits (`task.tokenizer` set), on `device` in `dtype`."""

    task: Any
    model: Any
    device: str = "cpu"
    dtype: str = "float32"


def load(task: Any = "zsre-smollm2", *, model: Any = None, tokenizer: Any = None, settings: Mapping[str, Any] | None = None,
         device: str = "cpu", dtype: str = "float32", data_dir: str | None = None) -> Loaded:
    """Load a task (a registered name, or a `Task` object) and its model.

    model: a hub name or local folder replacing the task's model (its `model` setting), or an
    already-loaded `nn.Module` (then `tokenizer`, or the task's own, is used). settings: the task's
    config fields (`editbench list TASK`).
    """
    from editbench import registry
    from editbench.runner import check_dtype, load_model, resolve_device

    import torch

    device = resolve_device(device)
    check_dtype(dtype, device)
    settings = dict(settings or {})
    if isinstance(model, (str, Path)):
        settings["model"] = str(model)
    if isinstance(task, str):
        task = registry.create("task", task, settings, data_dir=data_dir)
    elif settings:
        raise EditbenchError(f"settings {', '.join(sorted(settings))} given for a task object ({task.name!r}); "
                             "expected them in the object's config")
    if model is None or isinstance(model, (str, Path)):
        model = load_model(task, device, getattr(torch, dtype))
    elif tokenizer is not None:
        task.tokenizer = tokenizer
    if getattr(task, "tokenizer", None) is None:
        raise EditbenchError(f"no tokenizer for the model given to task {task.name!r} (expected tokenizer=...)")
    return Loaded(task, model, device, dtype)


def as_request(fact: Any, index: int = 0) -> Any:
    """An `EditRequest` from a dict {prompt, target, rephrases?, subject?, unrelated?, id?} (or an
    `EditRequest`, returned as it is)."""
    from editbench.api import EditRequest

    if isinstance(fact, EditRequest):
        return fact
    if not isinstance(fact, Mapping) or not fact.get("prompt") or not fact.get("target"):
        raise EditbenchError(f"fact {index} is {fact!r}: expected a dict with 'prompt' and 'target' or an EditRequest")
    unknown = sorted(set(fact) - set(FACT_KEYS))
    if unknown:
        raise EditbenchError(f"fact {index} has unknown key {unknown[0]!r} (expected {', '.join(FACT_KEYS)})")
    rephrases = fact.get("rephrases", fact.get("equivalents", ()))
    return EditRequest(id=str(fact.get("id", f"fact-{index}")), prompt=fact["prompt"], target=fact["target"],
                       equivalents=(rephrases,) if isinstance(rephrases, str) else tuple(rephrases),
                       unrelated=tuple(tuple(pair) for pair in fact.get("unrelated", ())),
                       subject=fact.get("subject"), original=fact.get("original"))


def with_training_facts(task: Any, train: Iterable[Any], valid: Iterable[Any] | None = None) -> Any:
    """A view of `task` whose 'train' (and 'valid') split are the given facts, for methods that train an
    editor (MALMEN, MEND); `valid` defaults to the training facts. Its name gains `+facts-<hash of the
    facts>`, so an editor trained on them is cached apart from one trained on the task's own data.
    The view shares the task's state (tokenizer, model, config)."""
    import random

    from editbench.provenance import config_key

    splits = {"train": [as_request(f, i) for i, f in enumerate(train)]}
    splits["valid"] = [as_request(f, i) for i, f in enumerate(valid)] if valid is not None else splits["train"]
    if not splits["train"] or not splits["valid"]:
        raise EditbenchError("no training facts (expected at least one for train_facts / valid_facts)")
    key = config_key({split: [r.to_dict() for r in rows] for split, rows in splits.items()})[:8]
    base = type(task)

    def split_size(self: Any, split: str) -> int:
        return len(splits[split]) if split in splits else base.split_size(self, split)

    def requests(self: Any, split: str, count: int, seed: int) -> list[Any]:
        if split not in splits:
            return base.requests(self, split, count, seed)
        rows = splits[split]
        if not 1 <= count <= len(rows):
            raise EditbenchError(f"{count} {split} facts asked for, {len(rows)} given (expected 1..{len(rows)}; "
                                 f"a trained editor's train_edits defaults to the number of facts edited)")
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        return [rows[i] for i in order[:count]]

    view_cls = type(base.__name__, (base,), {"name": f"{base.name}+facts-{key}", "split_size": split_size,
                                              "requests": requests, "__module__": base.__module__})
    view = object.__new__(view_cls)
    view.__dict__ = task.__dict__  # shared: a tokenizer set on one is set on both
    return view


@dataclass
class EditOutcome:
    """What `edit` returns. deltas: {module: ΔW [d_out, d_in]} now in `model`; scores: per fact
    {id, prompt, target, pre, post, predicted} (metrics as in the results, `predicted` the decoded
    argmax after the edit); record: the run record (`editbench run`'s, not written)."""

    deltas: dict[str, Any]
    scores: list[dict[str, Any]]
    record: dict[str, Any]
    model: Any = field(repr=False, default=None)
    task: Any = field(repr=False, default=None)
    requests: list[Any] = field(repr=False, default_factory=list)
    original: dict[str, Any] | None = field(repr=False, default=None)  # {module: W [d_out, d_in]} before the edit
    reverted: bool = False

    def revert(self) -> None:
        """Take the edit back: the weights are bit-for-bit what they were before `edit`."""
        from editbench.modules import apply_deltas, restore

        if self.reverted:
            raise EditbenchError("this edit was already reverted")
        kept = self.original or {}
        apply_deltas(self.model, {n: d for n, d in self.deltas.items() if n not in kept}, sign=-1)
        restore(self.model, kept)
        self.reverted = True

    def save(self, folder: str | Path, model: bool = False) -> Path:
        """Save the deltas + JSON sidecar into `folder` (`editbench.edits.save_edit`); with `model`, also
        the edited model by `save_pretrained` into `folder/model`. Returns `folder`."""
        from editbench.edits import MODEL_DIR, save_edit, save_model
        from editbench.provenance import model_fingerprint
        from editbench.runner import edit_info

        if self.reverted:
            raise EditbenchError("this edit was reverted: nothing to save (edit again first)")
        folder = Path(folder).expanduser()
        edited = model_fingerprint(self.model)
        save_edit(self.deltas, folder, {**edit_info(self.record, self.requests), "edited_fingerprint": edited})
        if model:
            save_model(self.model, getattr(self.task, "tokenizer", None), folder / MODEL_DIR,
                       {"run_id": self.record["run_id"], "model_fingerprint": edited})
        return folder


def edit(target: Any, facts: Iterable[Any], method: Any = "ft", settings: Mapping[str, Any] | None = None, *,
         seed: int = 0, train_facts: Iterable[Any] | None = None, valid_facts: Iterable[Any] | None = None) -> EditOutcome:
    """Edit all `facts` at once into the model of `target` (a `Loaded`, a task name or a `Task`) with
    `method` (a registered name or a `Method` object built by you) and its `settings` (the method's
    config fields: `editbench list METHOD`). The model is changed in place. `train_facts` (and
    `valid_facts`): what a trained editor (MALMEN, MEND) trains on instead of the task's splits
    (`with_training_facts`); a saved editor is reused from the cache when it matches."""
    from editbench.runner import RunSpec, execute

    if not isinstance(target, Loaded):
        target = load(target)
    if train_facts is not None:
        target = Loaded(with_training_facts(target.task, train_facts, valid_facts), target.model, target.device,
                        target.dtype)
    requests = [as_request(fact, i) for i, fact in enumerate(facts)]
    spec = RunSpec(method=method if isinstance(method, str) else method.name, task=target.task.name,
                   edits=len(requests), seed=seed, device=target.device, dtype=target.dtype, sets=dict(settings or {}))
    run = execute(spec, method=None if isinstance(method, str) else method, task=target.task, model=target.model,
                  requests=requests, write=False, keep_undo=True)
    scores = [{"id": row["request"]["id"], "prompt": row["request"]["prompt"], "target": row["request"]["target"],
               "pre": row["pre"], "post": row["post"],
               "predicted": row["post_outcome"]["edit"].get("predicted_text", row["post_outcome"]["edit"]["predicted"])}
              for row in run.per_edit]
    return EditOutcome(run.deltas, scores, run.record, run.model, run.task, requests, run.original)
