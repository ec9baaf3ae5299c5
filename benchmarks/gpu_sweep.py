"""The benchmark suite's points at growing m on a GPT-2-sized random model, fp32 and bf16, on a GPU.

    python benchmarks/gpu_sweep.py --out gpu_check.json            # CUDA: GPT-2 124M shape, ~8 minutes on an H200
    python benchmarks/gpu_sweep.py --cpu --quick --out quick.json  # CPU smoke test on a tiny model

What: MALMEN and MEND edit (Alg. 1) and meta-step (Alg. 2, economic), MEMIT statistics and edit,
each at growing m (`benchmarks/points.py`): wall time, torch's peak allocated memory and the
device's peak used memory through NVML, printed as a table and written as JSON (`{"machine":
..., "rows": [...]}`, readable by `benchmarks/report.py`). The model is built from a config (no
hub access needed): GPT-2 small's shape (12 blocks, width 768, vocabulary 50,257) with random
weights, fed by a character tokenizer (ids below 98); the costs depend on the shapes, not the
weights. Each (method, phase) runs once untimed at m = 8 before its first point. A point that fails (out of memory, say) is recorded with its error; points left when
`--budget-s` has passed are recorded as skipped. Fig. 9's check is printed per dtype: the MALMEN
edit's torch peak at the largest m over its peak at the smallest.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import points  # noqa: E402
import report  # noqa: E402

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def sized_task(layers: int, width: int, vocab: int, device: str, dtype, requests: int):
    """A `TinyCausalTask` around a random GPT-2 of the given shape (MEMIT on blocks 3-8, or 1-2 when small)."""
    import torch
    import transformers as tf
    from tiny import TinyCausalTask

    from editbench.tasks.common.layers import modules_for

    class SizedTask(TinyCausalTask):
        def edit_modules(self, role: str) -> list[str]:
            memit = tuple(range(3, 9)) if layers >= 9 else (1, 2)
            return modules_for("gpt2", layers, role, memit_layers=memit)

    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=vocab, n_positions=1024, n_embd=width, n_layer=layers, n_head=max(1, width // 64),
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    model = tf.GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()
    return SizedTask("gpt2", model=model, splits={"train": requests, "valid": 4, "eval": requests}), model


def plan(args) -> list[tuple[str, str, int]]:
    """(method, phase, m) in the order run: MEMIT's statistics, then every phase at each m, smallest
    m first, so that a short budget still covers each phase."""
    hyper, meta, memit = (set(map(int, s.split(","))) for s in (args.ms, args.meta_ms, args.memit_ms))
    out = [("memit", "statistics", args.stats_texts)]
    for m in sorted(hyper | meta | memit):
        out += [(method, "edit", m) for method in ("malmen", "mend") if m in hyper]
        out += [(method, "meta-step (economic)", m) for method in ("malmen", "mend") if m in meta]
        out += [("memit", "edit", m)] if m in memit else []
    return out


def run_point(method: str, phase: str, m: int, task, model, state: dict, args) -> dict:
    from editbench.methods.malmen import Malmen
    from editbench.methods.memit import Memit, MemitConfig
    from editbench.methods.mend import Mend

    if method == "memit":
        if "memit" not in state:
            corpus = Path(args.work) / "corpus.txt"
            corpus.write_text("\n".join(f"Paragraph {i}: the {i}th town has {i * 7} houses and a river." * 8
                                        for i in range(args.stats_texts)))
            settings = dict(stats_corpus=str(corpus), stats_samples=args.stats_texts,
                            stats_dir=str(Path(args.work) / f"stats-{id(model)}"))
            if not args.cpu:  # groups of z_batch_size (16) requests: the default 512 MiB budget fits
                settings.update(z_memory_mb=0)  # one request at a time with GPT-2's 50,257-way logits
            if args.quick:  # a tiny model: one prefix and few z steps (see tests/test_memit.py)
                settings.update(prefixes=MemitConfig().prefixes[:1], steps=8, weight_decay=0.0, clamp_norm_factor=4.0,
                                update_weight=1.0)
            state["memit"] = Memit(MemitConfig(**settings))
        memit = state["memit"]
        if phase == "statistics":
            return points.memit_statistics_point(memit, task, model, Path(args.work))
        memit.prepare(task, model, Path(args.work))  # reused from the statistics point
        return points.edit_point(memit, task, model, task.requests("eval", m, 0))
    cls = {"malmen": Malmen, "mend": Mend}[method]
    runner = state.setdefault(method, points.hypernet(cls, task, model))
    if phase == "edit":
        return points.edit_point(runner, task, model, task.requests("eval", m, 0))
    return points.meta_step_point(runner, task, model, m)


def machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    try:
        import subprocess

        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError:
        pass
    return info


def save(out: str, device: str, started: float, rows: list[dict]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"machine": machine(device), "seconds": time.perf_counter() - started,
                                     "rows": rows}, indent=1, default=str))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (default: CUDA, an error without it)")
    parser.add_argument("--quick", action="store_true", help="a tiny model (4 blocks, width 64) and small m")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--ms", default=None, help="m of the edits (default 64,256,1024,4096; quick: 16,64)")
    parser.add_argument("--meta-ms", default=None, help="m of the meta-steps (default 64,256,1024; quick: 16)")
    parser.add_argument("--memit-ms", default=None, help="m of MEMIT's edits (default 64,256; quick: 4,16)")
    parser.add_argument("--stats-texts", type=int, default=None, help="texts of MEMIT's statistics (default 1000; quick: 50)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the points left after this many seconds")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--work", default=None, help="scratch folder (statistics, corpus; default: a temporary one)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.ms = args.ms or ("16,64" if quick else "64,256,1024,4096")
    args.meta_ms = args.meta_ms or ("16" if quick else "64,256,1024")
    args.memit_ms = args.memit_ms or ("4,16" if quick else "64,256")
    args.stats_texts = args.stats_texts or (50 if quick else 1000)

    import tempfile

    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("gpu_sweep: CUDA is not available (use --cpu for a CPU run)", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    args.work = args.work or tempfile.mkdtemp(prefix="editbench-gpu-check-")
    shape = dict(layers=4, width=64, vocab=98) if quick else dict(layers=12, width=768, vocab=50257)
    largest = max(int(m) for s in (args.ms, args.meta_ms, args.memit_ms) for m in s.split(","))
    dtypes = [DTYPES[d] for d in args.dtypes.split(",")]
    models = {d: sized_task(**shape, device=device, dtype=getattr(torch, d), requests=largest) for d in dtypes}
    states: dict[str, dict] = {d: {} for d in dtypes}
    started, rows = time.perf_counter(), []
    print(f"gpu_sweep: {device}, GPT-2 shape {shape}, dtypes {dtypes}, budget {args.budget_s:.0f} s", flush=True)
    for method, phase, m in plan(args):
        for dtype in dtypes:
            task, model = models[dtype]
            context = {"model": f"gpt2-{shape['layers']}x{shape['width']}", "dtype": dtype, "device": device}
            if time.perf_counter() - started > args.budget_s:
                rows.append({**context, "method": method, "phase": phase, "m": m, "error": "skipped (budget)"})
                continue
            try:
                if (method, phase) not in states[dtype] and phase != "statistics":  # warm-up, untimed: kernels, caches
                    run_point(method, phase, min(m, 8), task, model, states[dtype], args)
                    states[dtype][(method, phase)] = True
                point = run_point(method, phase, m, task, model, states[dtype], args)
            except Exception as exc:  # noqa: BLE001 (an out-of-memory point is a result too)
                point = {"method": method, "phase": phase, "m": m, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append({**context, **point})
            print(json.dumps({k: v for k, v in rows[-1].items() if not isinstance(v, (list, dict))}), flush=True)
            save(args.out, device, started, rows)  # after every point: a killed run keeps what it measured
    print(report.table(rows))
    for dtype in dtypes:
        edits = {r["m"]: r for r in rows if r["method"] == "malmen" and r["phase"] == "edit" and r["dtype"] == dtype
                 and "error" not in r}
        if len(edits) >= 2:
            lo, hi = edits[min(edits)], edits[max(edits)]
            print(f"Fig. 9 ({dtype}): MALMEN edit peak memory at m = {max(edits)} / m = {min(edits)}: "
                  f"{hi['peak_memory_bytes'] / lo['peak_memory_bytes']:.3f} (above start: "
                  f"{(hi['peak_above_start_bytes'] or 0) / max(1, lo['peak_above_start_bytes'] or 0):.3f})")
    save(args.out, device, started, rows)
    print(f"gpu_sweep: {len(rows)} points in {time.perf_counter() - started:.0f} s -> {args.out}")
    failed = [r for r in rows if "error" in r and not r["error"].startswith("skipped")]
    bad = [r for r in rows if "error" not in r and not (r.get("finite") and r.get("peak_memory_bytes", 0) > 0)]
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
