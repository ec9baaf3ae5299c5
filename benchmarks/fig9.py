"""Fig. 9 of the MALMEN paper: time and peak memory of one meta-training step as m grows,
memory-economic (Alg. 2) vs concatenated (MEND-style) back-propagation, on a tiny random model;
and (`--phase edit`) of one edit (Alg. 1, streamed over LM batches), whose memory should stay flat.

    python benchmarks/fig9.py --method malmen --ms 16,64,256,1024,4096 --out fig9.csv
    python benchmarks/fig9.py --phase edit --ms 64,4096 --out fig9-edit.csv

Each point runs in a fresh process (peak resident memory is a per-process high-water mark);
the peak is reported above the process's level just before the step. Writes a CSV and prints a
markdown table (no plotting dependency: plot `peak_mib` and `seconds` against `m`).
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import queue as queue_module
import resource
import sys
import time
from pathlib import Path

FIELDS = ["method", "mode", "m", "tokens", "seconds", "peak_mib"]  # tokens: cached rows n per layer


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(method: str, mode: str, m: int, arch: str = "gpt2", rank: int = 1920) -> dict:
    """One meta-gradient step at m edits; returns its wall time and peak memory above baseline."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny import TinyCausalTask  # noqa: E402

    from editbench.methods.hypernet.meta import meta_gradient
    from editbench.methods.hypernet.training import meta_batch
    from editbench.methods.malmen import Malmen
    from editbench.methods.mend import Mend

    torch.manual_seed(0)
    task = TinyCausalTask(arch, splits={"train": max(m, 16), "valid": 4, "eval": 4})
    model = task.load_model()
    cls = {"malmen": Malmen, "mend": Mend}[method]
    runner = cls(cls.Config(rank=rank, training_mode=mode, lm_batch_size=64, chunk_size=4096))
    editor = runner.build_editor(task, model)
    setup = runner.setup(task)
    meta_gradient(editor, task, model, meta_batch(task.requests("train", 4, 1), 1), setup, mode)  # warm-up
    editor.zero_grad(set_to_none=True)
    step = meta_batch(task.requests("train", m, 0), 0)
    baseline = _rss_mib()
    started = time.perf_counter()
    meta_gradient(editor, task, model, step, setup, mode)
    seconds = time.perf_counter() - started
    edits = task.batch(step.edits)
    tokens = int((edits.labels != -100).sum() if runner.answer_only else edits.inputs["attention_mask"].sum())
    return {"method": method, "mode": mode, "m": m, "tokens": tokens, "seconds": round(seconds, 4),
            "peak_mib": round(max(0.0, _rss_mib() - baseline), 1)}


def measure_edit(method: str, m: int, arch: str = "gpt2", lm_batch_size: int = 64) -> dict:
    """One edit of m requests with an untrained editor, after a warm-up edit of 16; returns its wall
    time, the peak resident memory (`peak_mib`) and the peak above the level at its start
    (`above_start_mib`, what the edit itself needs), both in MiB."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import points  # noqa: E402
    from tiny import TinyCausalTask  # noqa: E402

    from editbench.methods.malmen import Malmen
    from editbench.methods.mend import Mend

    torch.manual_seed(0)
    task = TinyCausalTask(arch, splits={"eval": max(m, 16)})
    model = task.load_model()
    cls = {"malmen": Malmen, "mend": Mend}[method]
    runner = points.hypernet(cls, task, model, lm_batch_size=lm_batch_size)
    points.edit_point(runner, task, model, task.requests("eval", 16, 1))  # warm-up
    point = points.edit_point(runner, task, model, task.requests("eval", m, 0))
    return {**point, "mode": "edit", "tokens": int(point["cached_tokens"]), "peak_mib": point["peak_memory_bytes"] / 2**20,
            "above_start_mib": point["peak_above_start_bytes"] / 2**20}


def _child(queue, fn, *args):
    queue.put(fn(*args))


def measure_isolated(*args, fn=measure) -> dict:
    """`fn(*args)` (default: a meta-step, `measure`) in a fresh process (peak memory is per process)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, *args))
    proc.start()
    while True:  # a child that died (import error, out of memory) never answers: fail, do not hang
        try:
            row = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the benchmark process of {getattr(fn, '__name__', fn)}{args} exited "
                                   f"with code {proc.exitcode} without a result")
    proc.join()
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="malmen", choices=["malmen", "mend"])
    parser.add_argument("--phase", default="meta-step", choices=["meta-step", "edit"])
    parser.add_argument("--modes", default="economic,concatenated")
    parser.add_argument("--ms", default="16,64,256,1024,4096")
    parser.add_argument("--arch", default="gpt2", choices=["gpt2", "gptj", "llama"])
    parser.add_argument("--rank", type=int, default=1920)
    parser.add_argument("--out", default="fig9.csv")
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes.split(",") if args.phase == "meta-step" else ["edit"]:
        for m in map(int, args.ms.split(",")):
            if mode == "edit":
                rows.append(measure_isolated(args.method, m, args.arch, fn=measure_edit))
            else:
                rows.append(measure_isolated(args.method, mode, m, args.arch, args.rank))
            print({k: rows[-1][k] for k in FIELDS}, flush=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print("| " + " | ".join(FIELDS) + " |\n|" + "---|" * len(FIELDS))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in FIELDS) + " |")


if __name__ == "__main__":
    main()
