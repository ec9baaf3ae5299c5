"""CPU time, wall time and peak memory of MEMIT's one-off key statistics on the embedded SmolLM2-135M
(`zsre-smollm2`, float32, CPU): `points.memit_statistics_point` over `--samples` WikiText-2
paragraphs and the task's MEMIT layers, each repeat into a fresh statistics folder (so each computes).

Also prints the resident memory right before the phase (model loaded): the floor of the peak.
Run it with one thread, as the issue-13 targets are stated:

    OMP_NUM_THREADS=1 EDITBENCH_DATA=../shared/data python benchmarks/memit_stats.py --samples 100 --repeat 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import points  # noqa: E402

from editbench.measure import current_rss_bytes  # noqa: E402

GIB = 2 ** 30


def one_point(task, model, samples: int, overrides: dict) -> dict:
    """One statistics point in fresh folders (the row has wall and CPU seconds); adds the RSS floor."""
    from editbench.methods.memit import Memit, MemitConfig

    _, preset = task.preset_for(Memit)
    with tempfile.TemporaryDirectory(prefix="memit-stats-") as folder:
        method = Memit(MemitConfig(**{**preset, **overrides, "stats_samples": samples, "stats_dir": str(Path(folder) / "stats")}))
        floor = current_rss_bytes()
        point = points.memit_statistics_point(method, task, model, Path(folder) / "cache")
        point.update(wall_seconds=point["seconds"], rss_floor_bytes=floor, batch_tokens=method.config.stats_batch_tokens)
    assert point["finite"] and point["positive_diagonal"] and point["computed"] == point["layers"] > 0, point
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="WikiText-2 paragraphs (stats_samples)")
    parser.add_argument("--repeat", type=int, default=1, help="points measured one after another in this process")
    parser.add_argument("--batch-tokens", type=int, default=None, help="stats_batch_tokens (default: MemitConfig's)")
    args = parser.parse_args()
    overrides = {} if args.batch_tokens is None else {"stats_batch_tokens": args.batch_tokens}

    import torch
    from editbench.tasks.zsre import ZsreSmolLM2

    data = os.environ.get("EDITBENCH_DATA")
    if not data:
        sys.exit("set EDITBENCH_DATA to the data folder")
    task = ZsreSmolLM2(data_dir=data)
    model = task.load_model()
    print(f"torch threads {torch.get_num_threads()}, model loaded: RSS {current_rss_bytes() / GIB:.3f} GiB")
    for i in range(args.repeat):
        p = one_point(task, model, args.samples, overrides)
        print(f"[{i}] samples {args.samples} layers {p['layers']} batch tokens {p['batch_tokens']}: cpu {p['cpu_seconds']:.2f} s, wall {p['wall_seconds']:.2f} s, "
              f"peak {p['peak_memory_bytes'] / GIB:.3f} GiB (floor {p['rss_floor_bytes'] / GIB:.3f} GiB, "
              f"above start {(p['peak_above_start_bytes'] or 0) / GIB:.3f} GiB)", flush=True)


if __name__ == "__main__":
    main()
