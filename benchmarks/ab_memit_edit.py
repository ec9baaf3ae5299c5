"""CPU seconds and peak RSS of one MEMIT edit of m CounterFact requests on SmolLM2-135M with the
published settings (`MemitConfig()` defaults: 25 z steps, lr 0.5, the 5 context prefixes, lambda 15,000),
through the API every editbench commit since d185c99 has, so that an older checkout can be measured
with the same harness:

    OMP_NUM_THREADS=1 EDITBENCH_DATA=../shared/data python benchmarks/ab_memit_edit.py --m 16 --format raw

The key statistics are computed (untimed) first where they are not cached. `--format raw` is the only
prompt format of commits before the chat format.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_common  # noqa: E402


def main() -> None:
    parser = ab_common.parser(__doc__, 16)
    args = parser.parse_args()

    from editbench.data import user_cache
    from editbench.measure import Phase
    from editbench.methods.memit import Memit, MemitConfig
    from editbench.tasks.counterfact import CounterfactSmolLM2

    task = ab_common.smollm2_task(CounterfactSmolLM2, args.format)
    model = task.load_model()
    method = Memit(MemitConfig())
    method.prepare(task, model, user_cache())
    requests = task.requests("eval", args.m, 0)
    cpu = time.process_time()
    with Phase("cpu") as stats:
        result = method.edit(task, model, requests)
    seconds = time.process_time() - cpu
    z = {k: v for k, v in result.stats.items() if k.startswith("z_") and isinstance(v, (int, float))}
    print(f"memit edit m={args.m} format={args.format} ({torch.get_num_threads()} thread(s)) at {os.getcwd()}: "
          f"{seconds:.1f} CPU s, {stats.seconds:.1f} s wall, peak RSS {stats.peak_rss_bytes / 2**30:.3f} GiB; "
          + ", ".join(f"{k} {v:.3g}" for k, v in sorted(z.items())))


if __name__ == "__main__":
    main()
