"""Meta-training of the editor (Alg. 2) with validation on the task's 'valid' split and early stopping."""
from __future__ import annotations

import copy
from contextlib import nullcontext
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from editbench.api import EditRequest, Task
from editbench.files import remove_artifact
from editbench.guard import check_finite
from editbench.metrics import aggregate
from editbench.methods.hypernet.capture import capture
from editbench.methods.hypernet.checkpoint import load_training_state, save_training_state
from editbench.methods.hypernet.config import HypernetConfig
from editbench.methods.hypernet.meta import EditorSetup, MetaBatch, meta_gradient
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.shifts import StreamedShifts, residual_of
from editbench.modules import add_to_weight, get_module, restore, snapshot, weight_of
from editbench.prefix import PrefixCache

log = logging.getLogger(__name__)


def meta_batch(requests: Sequence[EditRequest], seed: int) -> MetaBatch:
    """Edit tuples plus one equivalent and one unrelated tuple per request (Sec. 4.2), seeded."""
    rng = random.Random(seed)
    edits = [(r.prompt, r.target) for r in requests]
    equivalents = [(rng.choice(r.equivalents) if r.equivalents else r.prompt, r.target) for r in requests]
    unrelated = [rng.choice(r.unrelated) for r in requests if r.unrelated]
    return MetaBatch(edits, equivalents, unrelated)


def apply_editor(editor: Editor, task: Task, model: nn.Module, requests: Sequence[EditRequest],
                 setup: EditorSetup, prefix: PrefixCache | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Alg. 1: cache, generate and apply the shifts in place; returns (deltas [d', d], stats).

    Streamed over LM batches (`StreamedShifts`): each batch's keys and value gradients are turned
    into value differences and folded into per-layer sums at once, so memory does not grow with m
    (the paper's Fig. 9); the shifts equal `compute_shifts` over all rows. `mean_residual` is
    measured on the first `residual_rows` (1024) cached rows of each layer.

    `prefix`: a `PrefixCache` to run the LM passes on (meta-training's validation); by default one
    that keeps no states but runs the opening tokens shared by a batch's rows once.
    """
    started = time.perf_counter()
    pairs = [(r.prompt, r.target) for r in requests]
    if prefix is None:
        prefix = PrefixCache(model, setup.names, skip_lower=False)
    stream = StreamedShifts(editor, setup.aggregation, setup.chunk_size, setup.solve_dtype, setup.no_reg)
    for start in range(0, len(pairs), setup.lm_batch_size):  # the weights change only after the last batch
        stream.add(capture(task, model, setup.names, pairs[start:start + setup.lm_batch_size], setup.answer_only,
                           setup.lm_batch_size, prefix))
    shifts = stream.finish()
    deltas = {}
    for name, layer in shifts.items():
        shift = layer.shift.to(weight_of(get_module(model, name)).dtype)
        add_to_weight(get_module(model, name), shift)
        deltas[name] = shift
    stats = {"mean_residual": residual_of(shifts), "cached_tokens": float(stream.rows[stream.names[0]]),
             "edit_seconds": time.perf_counter() - started}
    return deltas, stats


def validate(editor: Editor, task: Task, model: nn.Module, requests: Sequence[EditRequest],
             setup: EditorSetup, prefix: PrefixCache | None = None) -> dict[str, float]:
    """Edit `requests`, score them, restore the weights (every LM pass on `prefix`'s cached lower blocks)."""
    before = snapshot(model, setup.names)
    try:
        with prefix.active() if prefix is not None else nullcontext():
            _, stats = apply_editor(editor, task, model, requests, setup, prefix)
            post = aggregate(task.evaluate(model, requests))
        result = {k: post[k] for k in ("es", "gs", "ls")}
    finally:
        restore(model, before)
    return {**result, "mean_residual": stats["mean_residual"]}


def make_optimizer(editor: Editor, config: HypernetConfig) -> torch.optim.Optimizer:
    lr_of_lr = config.lr_meta_lr or config.meta_lr
    rest = [p for n, p in editor.named_parameters() if n != "lr"]
    return torch.optim.Adam([{"params": rest}, {"params": [editor.lr], "lr": lr_of_lr}], lr=config.meta_lr)


def train_editor(editor: Editor, task: Task, model: nn.Module, setup: EditorSetup,
                 config: HypernetConfig, resume: Path | None = None) -> dict[str, Any]:
    """Meta-train `editor` in place; keeps the best validated state. Returns the training history.

    resume: where the state is saved at every validation; a state found there (from a killed run of
    the same config) is continued from its step, and the file is removed when training ends.
    """
    optimizer = make_optimizer(editor, config)
    train_size = task.split_size("train")
    m = min(config.train_edits, train_size)
    valid_requests = task.requests("valid", min(config.valid_edits, task.split_size("valid")), config.seed)
    started = time.perf_counter()
    prefix = PrefixCache(model, setup.names)  # lower blocks of every tuple, computed once per run
    initial = copy.deepcopy(editor.state_dict())
    restored = load_training_state(resume, editor, optimizer) if resume is not None else None
    if restored is not None:
        best_state, progress = restored
        history, stale, first = progress["history"], progress["stale"], progress["step"] + 1
        best = {"score": progress["best_score"], "step": progress["best_step"], "state": best_state}
        started -= progress["seconds"]
        log.warning(f"resuming meta-training at step {first} from {resume}")  # a killed training: worth seeing
    else:
        # Step 0: the untrained editor's validation scores, the baseline that training must beat.
        start = validate(editor, task, model, valid_requests, setup, prefix)
        history = [{"step": 0, **{f"valid_{k}": v for k, v in start.items()}, "valid_score": _valid_score(start)}]
        best = {"score": history[0]["valid_score"], "step": 0, "state": initial}
        stale, first = 0, 1
    hint = "lower meta_lr / lr_meta_lr or init_lr, or use float32"
    bar = tqdm(range(first, config.train_steps + 1), desc=f"meta-train ({config.training_mode})", disable=None)
    for step in bar:
        requests = task.requests("train", m, config.seed * 100_003 + step)
        optimizer.zero_grad(set_to_none=True)
        stats = meta_gradient(editor, task, model, meta_batch(requests, step), setup, config.training_mode, prefix)
        check_finite(stats["meta_loss"], "meta loss", "meta-training", step=step, hint=hint)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(editor.parameters(), config.max_grad_norm))
        check_finite(grad_norm, "meta-gradient", "meta-training", step=step, hint=hint)
        optimizer.step()
        bar.set_postfix(loss=f"{stats['meta_loss']:.3f}")
        record = {"step": step, **stats, "grad_norm": grad_norm}
        if step % config.valid_every == 0 or step == config.train_steps:
            valid = validate(editor, task, model, valid_requests, setup, prefix)
            score = _valid_score(valid)
            record.update({f"valid_{k}": v for k, v in valid.items()}, valid_score=score)
            if score > best["score"]:
                best = {"score": score, "step": step, "state": copy.deepcopy(editor.state_dict())}
                stale = 0
            else:
                stale += 1
        history.append(record)
        if resume is not None and "valid_score" in record:  # the last validated state, to resume from
            save_training_state(resume, editor, optimizer, best["state"], {
                "step": step, "stale": stale, "best_score": best["score"], "best_step": best["step"],
                "history": history, "seconds": time.perf_counter() - started})
        if stale >= config.patience:
            break
    if resume is not None:
        remove_artifact(resume)
    editor.load_state_dict(best["state"])
    unmoved = [name for name, value in editor.state_dict().items()
               if name in dict(editor.named_parameters()) and torch.equal(value, initial[name])]
    return {"best_step": best["step"], "best_valid_score": best["score"], "initial_valid_score": history[0]["valid_score"],
            "steps": len(history) - 1, "train_seconds": time.perf_counter() - started,
            "unmoved_parameters": unmoved, "history": history}


def _valid_score(valid: dict[str, float | None]) -> float:
    """Model selection score: the mean of validation ES, GS and LS, over those the task has (a
    FEVER claim has no rephrase: its GS is None)."""
    present = [valid[key] for key in ("es", "gs", "ls") if valid.get(key) is not None]
    if not present:
        raise ValueError(f"validation gave none of es, gs, ls: {valid}")
    return sum(present) / len(present)
