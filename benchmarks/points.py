"""One benchmark point each: (method, phase, m) -> wall time, peak memory and sanity checks.

Shared by the pytest suite (`tests/test_bench_*.py`) and the GPU sweep (`benchmarks/gpu_sweep.py`).
Every point returns a row (a flat dict, JSON-ready) with

    method, phase, m, seconds, cpu_seconds, peak_memory_bytes, peak_above_start_bytes,
    peak_gpu_torch_bytes, peak_gpu_nvml_bytes (None on CPU)

from `editbench.measure.Phase` (counters reset at the phase's start; CPU: peak resident memory),
plus what the caller asserts on: `finite` (the deltas, meta-loss and meta-gradients, covariances
are finite) and, for edits,
`changed_fraction` (the share of the targeted weights' entries the edit moved). The model is
restored exactly after every edit (`snapshot`/`restore`).

Hyper-network editors are untrained, with eta = 1e-3 instead of 1e-6 so that an edit moves bf16
weights too: the cost of Alg. 1 (cache, hyper-network, solve or sum, apply) and of one Alg. 2 step
does not depend on the editor's training.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from editbench.measure import Phase, PhaseStats
from editbench.modules import restore, snapshot

BENCH_ETA = 1e-3  # step size of the untrained benchmark editors (see the module docstring)


def measured(device: str, fn: Callable[[], Any]) -> tuple[Any, PhaseStats]:
    """Run `fn` inside a `Phase` on `device`; returns (its result, the phase's stats)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # NVML reads reserved memory: start each point from what is in use
    with Phase(device) as stats:
        result = fn()
    return result, stats


def row(method: str, phase: str, m: int, stats: PhaseStats, **extra) -> dict[str, Any]:
    return {"method": method, "phase": phase, "m": m, "seconds": stats.seconds, "cpu_seconds": stats.cpu_seconds,
            "peak_memory_bytes": stats.peak_memory_bytes, "peak_above_start_bytes": stats.peak_above_start_bytes,
            "peak_gpu_torch_bytes": stats.peak_gpu_torch_bytes, "peak_gpu_nvml_bytes": stats.peak_gpu_nvml_bytes,
            **extra}


def device_of(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).device)


def hypernet(method_cls, task, model, **overrides):
    """An untrained MALMEN/MEND method with its editor built for `model`."""
    method = method_cls(method_cls.Config(init_lr=BENCH_ETA, checkpoint=False, **overrides))
    method.editor = method.build_editor(task, model)
    return method


def edit_point(method, task, model, requests, label: str | None = None) -> dict[str, Any]:
    """One edit of `requests` (any Method with `edit`), timed; the weights are restored after it."""
    names = method.modules(task, model)
    before = snapshot(model, names)
    try:
        result, stats = measured(device_of(model), lambda: method.edit(task, model, requests))
        after = snapshot(model, names)
    finally:
        restore(model, before)
    moved = sum(int((after[n] != before[n]).sum()) for n in names)
    total = sum(before[n].numel() for n in names)
    # The deltas only: MEND's `mean_residual` divides by ||d_j||, 0 at tokens without gradient.
    finite = all(bool(torch.isfinite(d).all()) for d in result.deltas.values())
    return row(label or method.name, "edit", len(requests), stats, finite=finite, changed_fraction=moved / total,
               layers=len(result.deltas), **{k: v for k, v in result.stats.items() if isinstance(v, (int, float))})


def meta_step_point(method, task, model, m: int, mode: str = "economic", seed: int = 0) -> dict[str, Any]:
    """One meta-gradient step (Alg. 2 when `mode` = 'economic') at m edits from the 'train' split,
    on a fresh prefix cache (the first step of a training run, its most expensive)."""
    from editbench.methods.hypernet.meta import meta_gradient
    from editbench.methods.hypernet.training import meta_batch

    editor, setup = method.editor, method.setup(task, model)
    step = meta_batch(task.requests("train", m, seed), seed)
    editor.zero_grad(set_to_none=True)
    out, stats = measured(device_of(model), lambda: meta_gradient(editor, task, model, step, setup, mode))
    grads = [p.grad for p in editor.parameters() if p.grad is not None]
    finite = math.isfinite(out["meta_loss"]) and all(bool(torch.isfinite(g).all()) for g in grads)
    nonzero = sum(int((g != 0).any()) for g in grads)
    editor.zero_grad(set_to_none=True)
    return row(method.name, f"meta-step ({mode})", m, stats, finite=finite, grads_nonzero=nonzero,
               meta_loss=float(out["meta_loss"]))


def memit_statistics_point(method, task, model, cache_dir) -> dict[str, Any]:
    """MEMIT's one-off key covariances of every edited layer (one corpus pass), timed."""
    info, stats = measured(device_of(model), lambda: method.prepare(task, model, cache_dir))
    covariances = method._covariances  # noqa: SLF001 (what prepare produced; the benchmark checks it)
    finite = all(bool(torch.isfinite(c).all()) for c in covariances.values())
    samples = method.config.stats_samples
    return row(method.name, "statistics", samples, stats, finite=finite, layers=len(covariances),
               computed=len(info.get("stats_computed", [])),
               positive_diagonal=all(bool((c.diagonal() > 0).all()) for c in covariances.values()))
