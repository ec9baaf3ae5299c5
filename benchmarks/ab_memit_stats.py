"""CPU seconds and peak RSS of MEMIT's key statistics (`prepare`: one corpus pass for every edited
layer) over `--samples` WikiText-2 paragraphs on SmolLM2-135M (zsRE task, its MEMIT layers), into a
fresh statistics folder, through the API every editbench commit since d185c99 has:

    OMP_NUM_THREADS=1 EDITBENCH_DATA=../shared/data python benchmarks/ab_memit_stats.py --samples 100

Also prints the resident memory right before the phase (the model loaded): the floor of the peak.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def resident_bytes() -> int:
    """This process's resident memory now (Linux VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()

    import torch

    from editbench.measure import Phase
    from editbench.methods.memit import Memit, MemitConfig
    from editbench.tasks.zsre import ZsreSmolLM2

    task = ZsreSmolLM2(data_dir=os.environ["EDITBENCH_DATA"])
    model = task.load_model()
    with tempfile.TemporaryDirectory(prefix="memit-stats-") as folder:
        method = Memit(MemitConfig(stats_samples=args.samples, stats_dir=str(Path(folder) / "stats")))
        floor = resident_bytes()
        cpu = time.process_time()
        with Phase("cpu") as stats:
            method.prepare(task, model, Path(folder) / "cache")
        seconds = time.process_time() - cpu
    print(f"memit statistics samples={args.samples} ({torch.get_num_threads()} thread(s)) at {os.getcwd()}: "
          f"{seconds:.2f} CPU s, {stats.seconds:.2f} s wall, peak RSS {stats.peak_rss_bytes / 2**30:.3f} GiB "
          f"(floor {floor / 2**30:.3f} GiB)")


if __name__ == "__main__":
    main()
