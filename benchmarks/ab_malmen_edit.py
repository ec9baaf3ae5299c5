"""CPU seconds and peak RSS of one MALMEN edit (Alg. 1: cache, hyper-network, solve, apply) of m
zsRE requests on SmolLM2-135M, through the API every editbench commit since d185c99 has, so that an
older checkout can be measured with the same harness (`PYTHONPATH` or its own virtual environment):

    OMP_NUM_THREADS=1 EDITBENCH_DATA=../shared/data python benchmarks/ab_malmen_edit.py --m 64 --format raw

The editor is untrained (eta = 1e-3, as in `points.BENCH_ETA`): the cost does not depend on training.
`--format raw` is the only prompt format of commits before the chat format; each repeat restores the
weights. Prints every repeat and the median.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_common  # noqa: E402


def main() -> None:
    parser = ab_common.parser(__doc__, 64)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    from editbench.measure import Phase
    from editbench.methods.malmen import Malmen
    from editbench.modules import get_module
    from editbench.tasks.zsre import ZsreSmolLM2

    task = ab_common.smollm2_task(ZsreSmolLM2, args.format)
    model = task.load_model()
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():  # every weight resident before the first repeat
            parameter.add_(0)
    requests = task.requests("eval", args.m, 0)
    method = Malmen(Malmen.Config(init_lr=1e-3, checkpoint=False))
    method.editor = method.build_editor(task, model)
    names = method.modules(task, model) if hasattr(method, "modules") else task.edit_modules("malmen")
    original = {n: get_module(model, n).weight.detach().clone() for n in names}
    seconds = []
    for rep in range(args.reps):
        cpu = time.process_time()
        with Phase("cpu") as stats:
            method.edit(task, model, requests)
        seconds.append(time.process_time() - cpu)
        with torch.no_grad():
            for n in names:
                get_module(model, n).weight.copy_(original[n])
        print(f"  rep {rep}: {seconds[-1]:.2f} CPU s, {stats.seconds:.2f} s wall, peak RSS {stats.peak_rss_bytes / 2**30:.3f} GiB",
              flush=True)
    print(f"malmen edit m={args.m} format={args.format} ({torch.get_num_threads()} thread(s)) at {os.getcwd()}: "
          f"median {statistics.median(seconds):.2f} CPU s, min {min(seconds):.2f}")


if __name__ == "__main__":
    main()
