"""Time and peak memory of one MEMIT edit on a real task, with the published settings by default
(GPT-J's: 25 z steps, lr 0.5, the 5 context prefixes), as issue 13 measures it.

    EDITBENCH_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/memit_edit.py --task counterfact-smollm2 --m 16
    ... --steps 3 --plain-z          # the z passes through the whole model (no cached lower blocks,
                                     # no shared opening) for a before/after in one process

Prints CPU and wall seconds, peak RSS (the whole process) and the z statistics (batches, passes).
The statistics are computed (untimed) first when they are not cached.
"""
from __future__ import annotations

import argparse
import time

import torch

from editbench.measure import Phase, current_rss_bytes
from editbench.methods.memit.config import DEFAULT_PREFIXES
from editbench.registry import create


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="counterfact-smollm2")
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25, help="z passes (published: 25)")
    parser.add_argument("--no-prefixes", action="store_true", help="the bare prompt only (the task preset's choice)")
    parser.add_argument("--z-memory-mb", type=float, default=None, help="z batch memory budget (default: the config's)")
    parser.add_argument("--plain-z", action="store_true", help="z passes through the whole model, head at every position")
    parser.add_argument("--preset", action="store_true", help="start from the task's MEMIT preset (SmolLM2: lr 2.0, lambda 1406) instead of the published defaults")
    parser.add_argument("--all-steps", action="store_true", help="stop_loss 0: every request runs all the steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from editbench.methods.memit import targets

    task = create("task", args.task)
    model = task.load_model()
    overrides = {"steps": args.steps, "prefixes": () if args.no_prefixes else DEFAULT_PREFIXES}
    if args.all_steps:
        overrides["stop_loss"] = 0.0
    if args.z_memory_mb is not None:
        overrides["z_memory_mb"] = args.z_memory_mb
    method = _method(task, overrides, args.preset)
    method.prepare(task, model, None)
    if args.plain_z:
        _plain_z(targets)
    requests = task.requests("eval", args.m, args.seed)
    rss = current_rss_bytes()
    start = time.strftime("%H:%M:%S")
    with Phase("cpu") as stats:
        result = method.edit(task, model, requests)
    z = result.stats
    print(f"memit edit {args.task} m={args.m} steps={args.steps} prefixes={len(overrides['prefixes'])} "
          f"{'plain z' if args.plain_z else 'fast z'} (started {start}, {torch.get_num_threads()} threads): "
          f"{stats.seconds:.1f} s wall, {stats.cpu_seconds:.1f} CPU s, z {z['z_seconds']:.1f} s, "
          f"peak RSS {stats.peak_rss_bytes / 2**30:.2f} GiB (before: {rss / 2**30:.2f} GiB); "
          f"z batches {z['z_batches']} (max {z['z_batch_max']}), passes {z['z_passes_mean']:.1f}, "
          f"NLL {z['z_nll_before']:.3f} -> {z['z_nll_after']:.3f}")


def _method(task, overrides, use_preset: bool):
    """MEMIT with the published GPT-J settings (the config's defaults), or over the task's preset."""
    from editbench.methods.memit import Memit, MemitConfig

    preset = task.preset_for(Memit)[1] if use_preset else {}
    return Memit(MemitConfig(**{**preset, **overrides}))


def _plain_z(targets) -> None:
    """Every z pass through the whole model with the head at every position (the z pass before issue 13's
    changes): `ZProblem(skip_lower=False)` without the shared opening, and the task's full logits."""
    init, forward = targets.ZProblem.__init__, targets.ZProblem._forward

    def plain_init(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "skip_lower": False})
        self.cache.shares = False

    def plain_forward(self, rows, is_essence, delta):
        task = self.task
        task.answer_logits = lambda model, batch: task.logits(model, batch)[batch.labels != -100]
        try:
            return forward(self, rows, is_essence, delta)
        finally:
            del task.answer_logits

    targets.ZProblem.__init__, targets.ZProblem._forward = plain_init, plain_forward


if __name__ == "__main__":
    main()
