"""Time and peak memory of one MALMEN/MEND meta-training step on a real task, next to a plain
forward+backward of the same model over the m edit prompts (the step's unavoidable LM cost).

Step 0 runs on an empty prefix cache (it computes the lower blocks of its tuples once), later steps
on the filled one, as meta-training does once its training split is cached; `--no-prefix` runs
every pass through the whole model.

    EDITBENCH_DATA=../shared/data python benchmarks/meta_step.py --task zsre-smollm2 --method malmen --m 64
"""
from __future__ import annotations

import argparse
import torch

from editbench.measure import Phase
from editbench.registry import create


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="zsre-smollm2")
    parser.add_argument("--method", default="malmen", choices=["malmen", "mend"])
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--mode", default="economic", choices=["economic", "concatenated"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-prefix", action="store_true", help="run every LM pass through the whole model")
    parser.add_argument("--plain-only", action="store_true", help="only the plain forward+backward")
    args = parser.parse_args()

    from editbench.methods.hypernet.meta import meta_gradient
    from editbench.methods.hypernet.training import meta_batch
    from editbench.prefix import PrefixCache

    task = create("task", args.task)
    model = task.load_model()
    method = create("method", args.method)
    editor, setup = method.build_editor(task, model), method.setup(task)
    if args.plain_only:
        return plain_pass(task, model, args.m, setup.lm_batch_size)
    step = meta_batch(task.requests("train", args.m, 0), 0)
    prefix = PrefixCache(model, setup.names)
    if args.no_prefix:
        prefix.prefix = None
    meta_gradient(editor, task, model, meta_batch(task.requests("train", 4, 1), 0), setup, args.mode,
                  PrefixCache(model, setup.names))  # warm-up, on a cache of its own
    print(f"prefix cache: {'off' if not prefix.applies else f'blocks below {prefix.prefix.first} skipped'}")
    for i in range(args.repeats):
        with Phase("cpu") as stats:
            meta_gradient(editor, task, model, step, setup, args.mode, prefix)
        print(f"{args.method} {args.mode} m={args.m} step {i}: {stats.seconds:.2f} s ({stats.cpu_seconds:.2f} CPU s), "
              f"peak RSS {stats.peak_rss_bytes / 2**30:.2f} GiB, {torch.get_num_threads()} threads, "
              f"{len(prefix.rows)} tuples cached ({prefix.bytes / 2**20:.0f} MiB)")
    plain_pass(task, model, args.m, setup.lm_batch_size)


def plain_pass(task, model, m: int, batch_size: int) -> None:
    """Forward+backward of the whole model (every weight's gradient) over the m edit prompts, in LM
    batches of `batch_size` (one batch of 256 full-vocabulary logits exceeds 20 GiB)."""
    pairs = [(r.prompt, r.target) for r in task.requests("train", m, 0)]
    model.zero_grad(set_to_none=True)
    tokens = 0
    with Phase("cpu") as stats:
        for start in range(0, len(pairs), batch_size):
            batch = task.batch(pairs[start:start + batch_size])
            tokens += batch.inputs["input_ids"].numel()
            task.nll(model, batch, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    print(f"plain forward+backward over the {m} edit prompts: {stats.seconds:.2f} s ({stats.cpu_seconds:.2f} CPU s), "
          f"peak RSS {stats.peak_rss_bytes / 2**30:.2f} GiB, {tokens} padded tokens")


if __name__ == "__main__":
    main()
