"""One benchmark run: load the task's model, prepare the method, edit m requests, score, record.

Everything that can be checked before the model loads is checked first (options, configs with
their range checks, data folder, results folder), so a bad setting never costs a finished run.
Every result is guarded: NaN/Inf in the loaded weights, the edited weights, the shifts or the
method's statistics stops the run with one line (`NonFiniteError`, exit 2) and nothing is recorded.

`run` / `execute` accept already-built `method`, `task` and `model` objects and the facts to edit
(`requests`) instead of names and a sampled split (as lm-evaluation-harness's `simple_evaluate`
accepts a model object); `write=False` returns the record without writing it; `spec.save_edit`
keeps the edit (`editbench.edits`). `spec.rounds` > 1 edits T rounds of m facts one after the other
on the same model (`editbench.sequential`); the run is scored on all T·m facts. Beside ES/GS/LS,
`pre`/`post` hold the task's own scores (`Task.extra_metrics`: CounterFact's, perplexity).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

from editbench import registry
from editbench.config import as_dict, split_overrides
from editbench.errors import EditbenchError

log = logging.getLogger(__name__)

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
    save_edit: str | None = None  # folder for the edit's deltas + sidecar (`editbench.edits.save_edit`)
    save_model: bool = False  # also `save_pretrained` the edited model into <save_edit>/model
    rounds: int = 1  # sequential editing: `rounds` rounds of `edits` facts on the same model (`editbench.sequential`)
    eval_each_round: bool = False  # with rounds > 1, also score the facts edited so far after each round


@dataclasses.dataclass
class Outcome:
    """Everything one run produced: the record (as written), the per-edit rows, the weight shifts
    {module: ΔW [d_out, d_in]} that are in `model` now, and the objects used."""

    record: dict[str, Any]
    per_edit: list[dict[str, Any]]
    deltas: dict[str, Any]
    model: Any
    task: Any
    method: Any
    original: dict[str, Any] | None = None  # with keep_undo: {module: W [d_out, d_in]} before the edit
    round_deltas: list[dict[str, Any]] | None = None  # per round {module: ΔW [d_out, d_in]}; `deltas` is their sum


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


def run(spec: RunSpec, *, method: Any = None, task: Any = None, model: Any = None, requests: Any = None,
        write: bool = True) -> dict[str, Any]:
    """Execute `spec` and return its record; with `write` (the default) append it to the store under
    `spec.out`. `method` / `task` / `model`: already-built objects used instead of `spec.method` /
    `spec.task` / `task.load_model`; `requests`: the facts to edit instead of `spec.edits` drawn
    from the task's eval split."""
    given = {"model": model, "requests": requests, "write": write}
    options = {k: v for k, v in given.items() if v is not _PLAIN[k]}  # a plain `editbench run` passes none
    return _start(spec, method, task, options)


def execute(spec: RunSpec, *, method: Any = None, task: Any = None, model: Any = None, requests: Any = None,
            write: bool = True, keep_undo: bool = False) -> Outcome:
    """`run`, returning the whole `Outcome`. `keep_undo`: keep what takes the edit back bit-exactly
    (`Outcome.original` and the `Undo`s of `editbench.modules`); a benchmark run keeps nothing."""
    into: list[Outcome] = []
    _start(spec, method, task, {"model": model, "requests": requests, "write": write, "keep_undo": keep_undo,
                                "into": into})
    return into[0]


_PLAIN = {"model": None, "requests": None, "write": True}


def _start(spec: RunSpec, method: Any, task: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Check everything that can be checked before the model loads, then `_execute`."""
    from editbench.data import check_data_dir, own_data, user_cache
    from editbench.files import sweep_staging
    from editbench.results import default_store, prepare_store, remove_created

    removed = sweep_staging(user_cache())
    if removed:
        log.info(f"removed {len(removed)} staging leftover(s) of killed writes under {user_cache()}")
    device = resolve_device(spec.device)
    check_dtype(spec.dtype, device)
    requests = options.get("requests")
    if requests is None and spec.edits < 1:
        raise EditbenchError(f"--edits {spec.edits} must be at least 1")
    if spec.rounds < 1:
        raise EditbenchError(f"--rounds {spec.rounds} must be at least 1")
    if requests is not None and spec.rounds > 1:
        from editbench.sequential import split_rounds

        split_rounds(list(requests), spec.rounds)  # facts given must cut into equal rounds
    if requests is not None and not requests:
        raise EditbenchError("no facts to edit (expected at least one request)")
    check_data_dir(spec.data_dir)
    check_save_edit(spec)
    out = Path(spec.out).expanduser() if spec.out else default_store()
    with own_data(spec.own_data):
        method, task, preset_name, preset = _build(spec, method, task, requests is None)
        log.debug(f"{method.name} config {as_dict(method.config)} (preset {preset_name or 'none'}); "
                  f"{task.name} config {as_dict(task.config)}")
        # Before the model loads: a bad --out never costs a finished run.
        created = prepare_store(out) if options.get("write", True) else []
        try:
            return _execute(spec, method, task, preset_name, preset, device, out, **options)
        except BaseException:
            remove_created(created)
            raise


def check_save_edit(spec: RunSpec) -> None:
    """`--save-edit DIR` must be a new or empty folder, or one holding an earlier saved edit."""
    from editbench.edits import DELTAS_FILE

    if spec.save_edit is None:
        if spec.save_model:
            raise EditbenchError("--save-model needs --save-edit DIR (the edited model goes to DIR/model)")
        return
    folder = Path(spec.save_edit).expanduser()
    if folder.exists() and not folder.is_dir():
        raise EditbenchError(f"--save-edit {spec.save_edit!r} is a file (expected a new or empty folder)")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / DELTAS_FILE).exists():
        raise EditbenchError(f"--save-edit {spec.save_edit!r} is a folder holding other files "
                             "(expected a new or empty folder, or an earlier saved edit to replace)")


def _build(spec: RunSpec, method: Any = None, task: Any = None,
           sampled: bool = True) -> tuple[Any, Any, str | None, dict[str, Any]]:
    """The method and task objects of `spec` with their validated configs (objects given are used as
    they are: `--set` reaches only what is built here by name)."""
    method_cls = type(method) if method is not None else registry.load("method", spec.method)
    task_cls = type(task) if task is not None else registry.load("task", spec.task)
    method_sets, task_sets = split_overrides(spec.sets, method_cls, task_cls)
    preset_name, preset = task_cls.preset_for(method_cls)
    for given, sets, kind in ((method, method_sets, "method"), (task, task_sets, "task")):
        if given is not None and sets:
            raise EditbenchError(f"settings {', '.join(sorted(sets))} given for a {kind} object ({given.name!r}); "
                                 f"expected them in the object's config (or the {kind} by name)")
    if method is None:
        linked = {field: getattr(spec, attr) for field, attr in method_cls.follows_run.items()}
        method = registry.create("method", spec.method, {**linked, **preset, **method_sets})
    else:
        preset_name, preset = None, {}  # the object's config is what it is
    if task is None:
        task = registry.create("task", spec.task, task_sets, data_dir=spec.data_dir)
    if sampled:
        available = task.split_size("eval")
        if spec.rounds > 1 and spec.edits * spec.rounds > available:
            raise EditbenchError(f"--edits {spec.edits} x --rounds {spec.rounds} = {spec.edits * spec.rounds} facts is "
                                 f"larger than the eval split of {task.name} ({available} requests)")
        if spec.edits > available:
            raise EditbenchError(f"--edits {spec.edits} is larger than the eval split of {task.name} ({available} requests)")
    return method, task, preset_name, preset


def _execute(spec: RunSpec, method: Any, task: Any, preset_name: str | None, preset: dict[str, Any], device: str,
             out: Path, *, model: Any = None, requests: Any = None, write: bool = True, keep_undo: bool = False,
             into: list[Outcome] | None = None) -> dict[str, Any]:
    """Load, prepare, score, edit, score, record; returns the record (and appends the whole
    `Outcome` to `into` when given)."""
    import contextlib

    import torch

    from editbench.data import own_data_enabled, sha256_of
    from editbench.guard import check_finite, check_stats, check_weights
    from editbench.measure import Phase
    from editbench.metrics import aggregate, request_metrics
    from editbench.modules import no_undo, snapshot
    from editbench.provenance import device_name, git_commit, model_fingerprint, versions
    from editbench.source import source_hash
    from editbench.results import write_run
    from editbench.sequential import combined_phase, edit_rounds, round_records, split_rounds

    torch.manual_seed(spec.seed)
    phases = {}
    commit = git_commit()  # at the start: the code this run imports is the code of this commit

    log.info(f"loading {task.name}")
    with Phase(device) as phases["load"]:
        if model is None:
            model = load_model(task, device, getattr(torch, spec.dtype))
        elif getattr(task, "tokenizer", None) is None:
            raise EditbenchError(f"task {task.name!r} has no tokenizer for the model given "
                                 "(expected task.tokenizer set, e.g. by task.load_model)")
        check_weights(model, "the loaded model", hint="the model files (or their cache) are corrupt")
        fingerprint = model_fingerprint(model)
    log.info(f"preparing {method.name}")
    with Phase(device) as phases["prepare"]:
        prepare_info = method.prepare(task, model, artifact_dir(method, task, fingerprint)) or {}
    # Sequential editing: the T·m facts are drawn once and cut in order into T disjoint rounds.
    requests = list(requests) if requests is not None else task.requests("eval", spec.edits * spec.rounds, spec.seed)
    rounds = split_rounds(requests, spec.rounds)
    log.info(f"scoring {len(requests)} requests before the edit")
    with Phase(device) as phases["evaluate_pre"]:
        pre = task.evaluate(model, requests)
        pre_extra = task.extra_metrics(model, requests)
    log.info(f"editing with {method.name} (m = {len(rounds[0])}" + (f", {len(rounds)} rounds)" if len(rounds) > 1 else ")"))
    # A kept edit (API, --save-edit) must be exactly what adding its deltas gives, in any process, and
    # must come off bit-exactly; a method writing its weights directly (FT: W' = W + ΔW only up to
    # rounding) guarantees neither. So keep W of the edited modules and re-make W' = fl(W + ΔW) below.
    original = snapshot(model, method.modules(task, model)) if keep_undo or spec.save_edit is not None else None
    hint = f"{method.name}'s settings or --dtype {spec.dtype} make the edit diverge (see `editbench list {method.name}`)"

    def check_round(result: Any, number: int) -> None:
        phase = f"{method.name} edit" + (f" (round {number})" if len(rounds) > 1 else "")
        for name, delta in result.deltas.items():
            check_finite(delta, "weight shift", phase, layer=name, hint=hint)
        check_weights(model, f"the weights after the {phase}", hint=hint)
        check_stats(dict(result.stats), f"{phase} statistics", hint=hint)

    def score_so_far(edited: list[Any]) -> dict[str, Any]:
        log.info(f"scoring the {len(edited)} facts edited so far")
        before = pre[:len(edited)]  # rounds are cut in order: the facts edited so far come first
        return {**aggregate(task.evaluate(model, edited), before), **task.extra_metrics(model, edited)}

    # A benchmark run never takes its edit back: it keeps nothing to undo it (unless asked to).
    edited = edit_rounds(method, task, model, rounds, device, check_round,
                         score_so_far if spec.eval_each_round and len(rounds) > 1 else None,
                         undo=contextlib.nullcontext if keep_undo else no_undo, keep_round_deltas=into is not None)
    result = edited.rounds[-1].result
    phases["edit"] = combined_phase([done.phase for done in edited.rounds])
    if original is not None:
        with contextlib.nullcontext() if keep_undo else no_undo():
            reapply(model, original, edited.deltas)
    log.info("scoring after the edit")
    with Phase(device) as phases["evaluate_post"]:
        post = task.evaluate(model, requests)
        post_extra = task.extra_metrics(model, requests)

    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{method.name}-{task.name}-{len(requests)}-s{spec.seed}-{uuid.uuid4().hex[:6]}"
    if commit is not None and git_commit() != commit:
        log.warning(f"the checkout changed while the run ran (at start {commit}): recorded as -dirty, without a code hash")
        commit = commit.removesuffix("-dirty") + "-dirty"
    record = {
        "run_id": run_id,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method.name,
        "task": task.name,
        "edits": len(rounds[0]),
        "seed": spec.seed,
        "dtype": spec.dtype,
        "config": {"method": as_dict(method.config), "task": as_dict(task.config)},
        "overrides": dict(spec.sets),
        "preset": {"name": preset_name, "settings": preset},
        "rounds": len(rounds),
        "pre": {**aggregate(pre), **pre_extra},
        "post": {**aggregate(post, pre), **post_extra},
        "train_seconds": phases["prepare"].seconds,
        "edit_seconds": phases["edit"].seconds,
        "peak_memory_bytes": phases["edit"].peak_memory_bytes,
        "phases": {name: dataclasses.asdict(stats) for name, stats in phases.items()},
        "method_stats": dict(result.stats),
        "per_round": round_records(edited),
        "prepare_info": prepare_info,
        "delta_norms": {name: float(delta.float().norm()) for name, delta in edited.deltas.items()},
        "device": device_name(device),
        "versions": versions(),
        "commit": commit,
        "code": source_hash(method.name, task.name, commit) if commit and not commit.endswith("-dirty") else None,
        "model_fingerprint": fingerprint,
        "data_sha256": {name: sha256_of(path) for name, path in task.data_files().items()},
        "own_data": own_data_enabled(),
    }
    if spec.eval_each_round and len(rounds) > 1:
        record["per_round"][-1]["scores"] = record["post"]  # after the last round: the run's own scores
    decode = text_decoder(task, model)
    round_of = [number for number, chunk in enumerate(rounds, start=1) for _ in chunk]
    per_edit = [
        {"request": r.to_dict(), "round": number, "pre": request_metrics(a), "post": request_metrics(b, a),
         "pre_outcome": outcome_dict(a, decode), "post_outcome": outcome_dict(b, decode)}
        for r, number, a, b in zip(requests, round_of, pre, post)
    ]
    if spec.save_edit is not None:
        record["saved_edit"] = _save(spec, record, requests, edited.deltas, model, task)
    if write:
        runs_file = write_run(out, record, per_edit)
        log.info(f"wrote {run_id} to {runs_file}")
    if into is not None:
        into.append(Outcome(record, per_edit, edited.deltas, model, task, method, original if keep_undo else None,
                            [dict(done.result.deltas) for done in edited.rounds]))
    return record


def reapply(model: Any, original: dict[str, Any], deltas: dict[str, Any]) -> None:
    """Put back the weights `original` {module: W [d_out, d_in]} and add `deltas` to them, so the model
    is bit-for-bit what `apply_deltas(model, deltas)` gives on the unedited model (as a saved edit
    applied in a fresh process does). Modules outside `original` are left as the method left them."""
    from editbench.modules import apply_deltas, restore

    kept = {name: delta for name, delta in deltas.items() if name in original}
    restore(model, {name: original[name] for name in kept})
    apply_deltas(model, kept)


def edit_info(record: dict[str, Any], requests: Any) -> dict[str, Any]:
    """The sidecar of a saved edit: what made it, on which model, for which facts, and its scores."""
    keys = ("run_id", "method", "task", "edits", "seed", "dtype", "config", "overrides", "preset", "pre", "post",
            "commit", "versions", "model_fingerprint")
    return {**{k: record.get(k) for k in keys}, "requests": [r.to_dict() for r in requests]}


def _save(spec: RunSpec, record: dict[str, Any], requests: Any, deltas: dict[str, Any], model: Any, task: Any) -> str:
    """Write the edit (and with `spec.save_model` the edited model) under `spec.save_edit`."""
    from editbench.edits import MODEL_DIR, save_edit, save_model
    from editbench.provenance import model_fingerprint

    folder = Path(spec.save_edit).expanduser()
    info = {**edit_info(record, requests), "edited_fingerprint": model_fingerprint(model)}
    save_edit(deltas, folder, info)
    log.info(f"saved the edit ({len(deltas)} weight shifts) to {folder}")
    if spec.save_model:
        save_model(model, getattr(task, "tokenizer", None), folder / MODEL_DIR,
                   {"run_id": record["run_id"], "model_fingerprint": info["edited_fingerprint"]})
        log.info(f"saved the edited model to {folder / MODEL_DIR}")
    return str(folder)


def text_decoder(task: Any, model: Any) -> Any:
    """ids -> readable text: the tokenizer's decode for generative tasks, the label names of the
    model's config for classifiers (None when neither is available)."""
    if not task.generative:
        names = getattr(getattr(model, "config", None), "id2label", None) or {}
        return (lambda ids: " ".join(str(names.get(i, i)) for i in ids)) if names else None
    tokenizer = getattr(task, "tokenizer", None)
    return tokenizer.decode if hasattr(tokenizer, "decode") else None


def outcome_dict(outcome: Any, decode: Any) -> dict[str, Any]:
    """A `RequestOutcome` as a dict, every tuple's ids with their decoded text beside them
    (`predicted_text`, `gold_text`)."""
    as_dict_ = dataclasses.asdict(outcome)
    if decode is None:
        return as_dict_

    def with_text(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "predicted_text": decode(row["predicted"]), "gold_text": decode(row["gold"])}

    return {"edit": with_text(as_dict_["edit"]),
            "equivalents": [with_text(r) for r in as_dict_["equivalents"]],
            "unrelated": [with_text(r) for r in as_dict_["unrelated"]]}
