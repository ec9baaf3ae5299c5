"""Meta-training of the editor (Alg. 2) with validation on the task's 'valid' split and early stopping."""
from __future__ import annotations

import copy
import random
import time
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from editbench.api import EditRequest, Task
from editbench.metrics import aggregate
from editbench.methods.hypernet.capture import capture
from editbench.methods.hypernet.config import HypernetConfig
from editbench.methods.hypernet.meta import EditorSetup, MetaBatch, meta_gradient
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.shifts import compute_shifts, residual_of
from editbench.modules import add_to_weight, get_module, restore, snapshot, weight_of


def meta_batch(requests: Sequence[EditRequest], seed: int) -> MetaBatch:
    """Edit tuples plus one equivalent and one unrelated tuple per request (Sec. 4.2), seeded."""
    rng = random.Random(seed)
    edits = [(r.prompt, r.target) for r in requests]
    equivalents = [(rng.choice(r.equivalents) if r.equivalents else r.prompt, r.target) for r in requests]
    unrelated = [rng.choice(r.unrelated) for r in requests if r.unrelated]
    return MetaBatch(edits, equivalents, unrelated)


def apply_editor(editor: Editor, task: Task, model: nn.Module, requests: Sequence[EditRequest],
                 setup: EditorSetup) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Alg. 1: cache, generate and apply the shifts in place; returns (deltas [d', d], stats)."""
    started = time.perf_counter()
    cache = capture(task, model, setup.names, [(r.prompt, r.target) for r in requests], setup.answer_only,
                    setup.lm_batch_size)
    shifts = compute_shifts(editor, cache, setup.aggregation, setup.chunk_size, setup.solve_dtype, setup.no_reg)
    deltas = {}
    for name, layer in shifts.items():
        shift = layer.shift.to(weight_of(get_module(model, name)).dtype)
        add_to_weight(get_module(model, name), shift)
        deltas[name] = shift
    stats = {"mean_residual": residual_of(shifts), "cached_tokens": float(len(next(iter(cache.values()))[0])),
             "edit_seconds": time.perf_counter() - started}
    return deltas, stats


def validate(editor: Editor, task: Task, model: nn.Module, requests: Sequence[EditRequest],
             setup: EditorSetup) -> dict[str, float]:
    """Edit `requests`, score them, restore the weights."""
    before = snapshot(model, setup.names)
    try:
        _, stats = apply_editor(editor, task, model, requests, setup)
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
                 config: HypernetConfig) -> dict[str, Any]:
    """Meta-train `editor` in place; keeps the best validated state. Returns the training history."""
    optimizer = make_optimizer(editor, config)
    train_size = task.split_size("train")
    m = min(config.train_edits, train_size)
    valid_requests = task.requests("valid", min(config.valid_edits, task.split_size("valid")), config.seed)
    started = time.perf_counter()
    initial = copy.deepcopy(editor.state_dict())
    # Step 0: the untrained editor's validation scores, the baseline that training must beat.
    start = validate(editor, task, model, valid_requests, setup)
    history: list[dict[str, float]] = [{"step": 0, **{f"valid_{k}": v for k, v in start.items()},
                                        "valid_score": _valid_score(start)}]
    best = {"score": history[0]["valid_score"], "step": 0, "state": initial}
    stale = 0
    bar = tqdm(range(1, config.train_steps + 1), desc=f"meta-train ({config.training_mode})", disable=None)
    for step in bar:
        requests = task.requests("train", m, config.seed * 100_003 + step)
        optimizer.zero_grad(set_to_none=True)
        stats = meta_gradient(editor, task, model, meta_batch(requests, step), setup, config.training_mode)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(editor.parameters(), config.max_grad_norm))
        optimizer.step()
        bar.set_postfix(loss=f"{stats['meta_loss']:.3f}")
        record = {"step": step, **stats, "grad_norm": grad_norm}
        if step % config.valid_every == 0 or step == config.train_steps:
            valid = validate(editor, task, model, valid_requests, setup)
            score = _valid_score(valid)
            record.update({f"valid_{k}": v for k, v in valid.items()}, valid_score=score)
            if score > best["score"]:
                best = {"score": score, "step": step, "state": copy.deepcopy(editor.state_dict())}
                stale = 0
            else:
                stale += 1
        history.append(record)
        if stale >= config.patience:
            break
    editor.load_state_dict(best["state"])
    unmoved = [name for name, value in editor.state_dict().items()
               if name in dict(editor.named_parameters()) and torch.equal(value, initial[name])]
    return {"best_step": best["step"], "best_valid_score": best["score"], "initial_valid_score": history[0]["valid_score"],
            "steps": len(history) - 1, "train_seconds": time.perf_counter() - started,
            "unmoved_parameters": unmoved, "history": history}


def _valid_score(valid: dict[str, float]) -> float:
    """Model selection score: the mean of validation ES, GS and LS."""
    return (valid["es"] + valid["gs"] + valid["ls"]) / 3
