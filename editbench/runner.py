"""One benchmark run: load the task's model, prepare the method, edit m requests, score, record.

Everything that can be checked before the model loads is checked first (options, configs with
their range checks, data folder, results folder), so a bad setting never costs a finished run.
Every result is guarded: NaN/Inf in the loaded weights, the edited weights, the shifts or the
method's statistics stops the run with one line (`NonFiniteError`, exit 2) and nothing is recorded.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

from editbench import registry
from editbench.config import as_dict, split_overrides
from editbench.errors import EditbenchError

DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclasses.dataclass
class RunSpec:
    """What `editbench run` asks for."""

    method: str = "ft"
    task: str = "zsre-smollm2"
    edits: int = 32
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    out: str | None = None  # None: the personal store (`editbench.results.default_store()`)
    sets: dict[str, str] = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    own_data: bool = False  # accept local data files whose sha256 differs from DATA.md (recorded)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EditbenchError(f"--device {device!r} asked for, but torch sees no CUDA device (expected cpu or auto)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise EditbenchError(f"--device {device!r} is not one of cpu, cuda, cuda:N, auto")
    return device


def artifact_dir(method: Any, task: Any, fingerprint: str) -> Path:
    """Cache folder of a method's trained state, keyed by method config + task + model fingerprint."""
    from editbench.data import user_cache
    from editbench.provenance import config_key

    task_config = {k: v for k, v in as_dict(task.config).items() if k != "batch_size"}
    key = config_key({"method": method.name, "method_config": as_dict(method.config), "task": task.name,
                      "task_config": task_config, "model": fingerprint})
    return user_cache() / "artifacts" / method.name / f"{task.name}-{key}"


def _log(message: str) -> None:
    print(f"editbench: {message}", file=sys.stderr, flush=True)


def check_dtype(dtype: str, device: str) -> None:
    if dtype not in DTYPES:
        raise EditbenchError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype == "float16" and device == "cpu":
        # Issue 10: SmolLM2 in float16 on CPU scored ES 0 with NaN deltas (overflow): refused, not guessed at.
        raise EditbenchError("--dtype float16 is not supported on CPU (activations overflow to NaN/Inf); "
                             "use float32 or bfloat16 on CPU, float16 on --device cuda")


def load_model(task: Any, device: str, dtype: Any) -> Any:
    """`task.load_model`, with a model the user named (`--set model=...`) that transformers cannot
    load reported as one line instead of a traceback."""
    configured = getattr(task.config, "model", "")
    try:
        return task.load_model(device, dtype)
    except EditbenchError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if not configured:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EditbenchError(f"cannot load the model set by model={configured!r} for task {task.name!r} "
                             f"({type(exc).__name__}: {first}); expected a transformers model folder or hub name") from None


def run(spec: RunSpec) -> dict[str, Any]:
    """Execute `spec`, append its record to the store under `spec.out`, and return the record."""
    from editbench.data import check_data_dir, own_data, user_cache
    from editbench.files import sweep_staging
    from editbench.results import default_store, prepare_store, remove_created

    removed = sweep_staging(user_cache())
    if removed:
        _log(f"removed {len(removed)} staging leftover(s) of killed writes under {user_cache()}")
    device = resolve_device(spec.device)
    check_dtype(spec.dtype, device)
    if spec.edits < 1:
        raise EditbenchError(f"--edits {spec.edits} must be at least 1")
    check_data_dir(spec.data_dir)
    out = Path(spec.out).expanduser() if spec.out else default_store()
    with own_data(spec.own_data):
        method, task, preset_name, preset = _build(spec)
        created = prepare_store(out)  # before the model loads: a bad --out never costs a finished run
        try:
            return _execute(spec, method, task, preset_name, preset, device, out)
        except BaseException:
            remove_created(created)
            raise


def _build(spec: RunSpec) -> tuple[Any, Any, str | None, dict[str, Any]]:
    """The method and task objects of `spec` with their validated configs."""
    method_cls, task_cls = registry.load("method", spec.method), registry.load("task", spec.task)
    method_sets, task_sets = split_overrides(spec.sets, method_cls, task_cls)
    preset_name, preset = task_cls.preset_for(method_cls)
    linked = {field: getattr(spec, attr) for field, attr in method_cls.follows_run.items()}
    method = registry.create("method", spec.method, {**linked, **preset, **method_sets})
    task = registry.create("task", spec.task, task_sets, data_dir=spec.data_dir)
    available = task.split_size("eval")
    if spec.edits > available:
        raise EditbenchError(f"--edits {spec.edits} is larger than the eval split of {spec.task} ({available} requests)")
    return method, task, preset_name, preset


def _execute(spec: RunSpec, method: Any, task: Any, preset_name: str | None, preset: dict[str, Any], device: str,
             out: Path) -> dict[str, Any]:
    import torch

    from editbench.data import own_data_enabled, sha256_of
    from editbench.guard import check_finite, check_stats, check_weights
    from editbench.measure import Phase
    from editbench.metrics import aggregate, request_metrics
    from editbench.modules import no_undo
    from editbench.provenance import device_name, git_commit, model_fingerprint, versions
    from editbench.results import write_run

    torch.manual_seed(spec.seed)
    phases = {}

    _log(f"loading {spec.task}")
    with Phase(device) as phases["load"]:
        model = load_model(task, device, getattr(torch, spec.dtype))
        check_weights(model, "the loaded model", hint="the model files (or their cache) are corrupt")
        fingerprint = model_fingerprint(model)
    _log(f"preparing {spec.method}")
    with Phase(device) as phases["prepare"]:
        prepare_info = method.prepare(task, model, artifact_dir(method, task, fingerprint)) or {}
    requests = task.requests("eval", spec.edits, spec.seed)
    _log(f"scoring {len(requests)} requests before the edit")
    with Phase(device) as phases["evaluate_pre"]:
        pre = task.evaluate(model, requests)
    _log(f"editing with {spec.method} (m = {len(requests)})")
    with Phase(device) as phases["edit"], no_undo():  # a run never takes its edit back: keep nothing to undo it
        result = method.edit(task, model, requests)
    hint = f"{spec.method}'s settings or --dtype {spec.dtype} make the edit diverge (see `editbench list {spec.method}`)"
    for name, delta in result.deltas.items():
        check_finite(delta, "weight shift", f"{spec.method} edit", layer=name, hint=hint)
    check_weights(model, f"the weights after the {spec.method} edit", hint=hint)
    check_stats(dict(result.stats), f"{spec.method} edit statistics", hint=hint)
    _log("scoring after the edit")
    with Phase(device) as phases["evaluate_post"]:
        post = task.evaluate(model, requests)

    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{spec.method}-{spec.task}-{spec.edits}-s{spec.seed}-{uuid.uuid4().hex[:6]}"
    record = {
        "run_id": run_id,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": spec.method,
        "task": spec.task,
        "edits": spec.edits,
        "seed": spec.seed,
        "dtype": spec.dtype,
        "config": {"method": as_dict(method.config), "task": as_dict(task.config)},
        "overrides": dict(spec.sets),
        "preset": {"name": preset_name, "settings": preset},
        "pre": aggregate(pre),
        "post": aggregate(post, pre),
        "train_seconds": phases["prepare"].seconds,
        "edit_seconds": phases["edit"].seconds,
        "peak_memory_bytes": phases["edit"].peak_memory_bytes,
        "phases": {name: dataclasses.asdict(stats) for name, stats in phases.items()},
        "method_stats": dict(result.stats),
        "prepare_info": prepare_info,
        "delta_norms": {name: float(delta.float().norm()) for name, delta in result.deltas.items()},
        "device": device_name(device),
        "versions": versions(),
        "commit": git_commit(),
        "model_fingerprint": fingerprint,
        "data_sha256": {name: sha256_of(path) for name, path in task.data_files().items()},
        "own_data": own_data_enabled(),
    }
    per_edit = [
        {"request": r.to_dict(), "pre": request_metrics(a), "post": request_metrics(b, a),
         "pre_outcome": dataclasses.asdict(a), "post_outcome": dataclasses.asdict(b)}
        for r, a, b in zip(requests, pre, post)
    ]
    runs_file = write_run(out, record, per_edit)
    _log(f"wrote {run_id} to {runs_file}")
    return record
