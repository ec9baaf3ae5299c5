"""The `editbench` command line. Heavy imports happen inside the commands, so `--help` is fast."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from editbench.errors import EditbenchError

EXAMPLES = """
\b
Examples:
  editbench run                                            # FT, 32 edits on zsre-smollm2 (CPU, minutes)
  editbench run --method malmen --task zsre-smollm2 --edits 64
  editbench run --method malmen --task zsre-gptj --edits 8192 --device cuda --dtype bfloat16
  editbench run --method ft --task zsre-smollm2 --edits 32 --set lr=1e-4 --set epochs=3
  editbench run --method ft --edits 8 --save-edit my-edit --save-model   # keep the edit (and the edited model)
  editbench apply --task zsre-smollm2 --edit my-edit --out-model edited  # saved deltas onto the model
  editbench list
  editbench leaderboard --check
"""


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EditbenchError as exc:
            if ctx.params.get("debug"):
                raise  # --debug: the full traceback instead of the one line
            click.echo(f"editbench: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, epilog=EXAMPLES)
@click.version_option(package_name="editbench")
@click.option("-v", "--verbose", is_flag=True, help="show progress messages (loading, preparing, scoring, writing)")
@click.option("--debug", is_flag=True, help="show every message, and a full traceback on error instead of one line")
def main(verbose: bool, debug: bool) -> None:
    """Benchmark massive knowledge editing: MALMEN, MEND, MEMIT and FT on zsRE, CounterFact and FEVER.

    By default only warnings and the results are shown (-v: progress too, --debug: everything)."""
    import logging

    from editbench.logs import set_level

    set_level(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    if not (verbose or debug):
        quiet_progress_bars()


def quiet_progress_bars() -> None:
    """No model-loading progress bars by default (transformers / huggingface_hub): only warnings and
    the results, like editbench's own messages. Leaves torch unimported when it is not loaded yet."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


@main.command(epilog=EXAMPLES)
@click.option("--method", default="ft", show_default=True, help="editing method (see `editbench list`)")
@click.option("--task", default="zsre-smollm2", show_default=True, help="task: model + data + metrics")
@click.option("--edits", default=32, show_default=True, type=int, help="number of facts edited at once (m)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the sampled edit requests")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto")
@click.option("--dtype", default="float32", show_default=True, help="model dtype: float32, bfloat16, float16")
@click.option("--out", default=None, type=click.Path(),
              help="results store folder (runs.jsonl + per-edit files); default $EDITBENCH_RESULTS, else "
                   "~/.local/share/editbench/results (the project's curated store only with --out results)")
@click.option("--data-dir", default=None, type=click.Path(),
              help="data folder, the only one searched when given (else $EDITBENCH_DATA, then the user cache)")
@click.option("--own-data", is_flag=True,
              help="accept local data files whose sha256 differs from DATA.md (your own version; recorded in the run)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a method or task option (method.KEY / task.KEY when ambiguous)")
@click.option("--save-edit", default=None, type=click.Path(),
              help="keep the edit: its weight shifts (safetensors) + a JSON sidecar (method, config, model fingerprint, "
                   "facts, scores) in this folder, for `editbench apply`")
@click.option("--save-model", is_flag=True,
              help="with --save-edit DIR: also save the edited model (save_pretrained) into DIR/model")
@click.option("--rounds", default=1, show_default=True, type=int,
              help="sequential editing: ROUNDS rounds of EDITS facts each on the same model, each round edited on top "
                   "of the previous ones; scored on all ROUNDS x EDITS facts after the last round")
@click.option("--eval-each-round", is_flag=True,
              help="with --rounds: also score the facts edited so far after each round (the record's per_round)")
def run(method, task, edits, seed, device, dtype, out, data_dir, own_data, sets, save_edit, save_model,
        rounds, eval_each_round) -> None:
    """Prepare METHOD on TASK, edit EDITS requests at once, score before/after and record the run."""
    from editbench.config import parse_sets
    from editbench.results import default_store
    from editbench.runner import RunSpec, run as run_spec

    record = run_spec(RunSpec(method=method, task=task, edits=edits, seed=seed, device=device, dtype=dtype,
                              out=out, sets=parse_sets(sets), data_dir=data_dir, own_data=own_data,
                              save_edit=save_edit, save_model=save_model, rounds=rounds,
                              eval_each_round=eval_each_round))
    pre, post = record["pre"], record["post"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rounds = record.get("rounds", 1)
    click.echo(f"{record['method']} on {record['task']}, m = {record['edits']}"
               + (f" x {rounds} rounds" if rounds > 1 else "") + f", seed {record['seed']}")
    from editbench.metrics import TASK_METRICS

    for key in ("es", "gs", "ls", "retention", *(k for k in TASK_METRICS if k in post)):
        click.echo(f"  {key:<10} {fmt(pre[key])} -> {fmt(post[key])}")
    for row in record.get("per_round", []) if rounds > 1 else []:
        scores = row.get("scores", {})
        shown = ", ".join(f"{k} {fmt(scores[k])}" for k in ("es", "gs", "ls") if k in scores)
        click.echo(f"  round {row['round']}: edit {row['edit_seconds']:.1f} s" + (f"; {shown}" if shown else ""))
    click.echo(f"  train {record['train_seconds']:.1f} s, edit {record['edit_seconds']:.1f} s, "
               f"edit peak memory {record['peak_memory_bytes'] / 2**30:.2f} GiB")
    for key, value in sorted(record["method_stats"].items()):
        click.echo(f"  {key} {value:.4g}")
    if record.get("saved_edit"):
        click.echo(f"  edit saved to {record['saved_edit']}")
    if "run_id" in record:
        click.echo(f"  recorded as {record['run_id']} in {Path(out).expanduser() if out else default_store()}/runs.jsonl")


@main.command(name="list")
@click.argument("name", required=False)
@click.option("--task", default=None, help="with NAME (a method): also show the settings this task's preset gives it")
def list_(name, task) -> None:
    """List the registered methods and tasks, or every option of the method or task NAME."""
    from editbench.registry import available, describe

    if name is None:
        for kind, title in (("method", "Methods"), ("task", "Tasks")):
            click.echo(f"{title}:")
            for plugin, text in describe(kind):
                click.echo(f"  {plugin:<20} {text}")
        return
    from editbench.config import describe_options
    from editbench.registry import load

    kind = "method" if name in available("method") else "task"
    cls = load(kind, name)
    click.echo(f"{kind} {name}: {cls.description}")
    preset = {}
    if task is not None and kind == "method":
        preset_name, preset = load("task", task).preset_for(cls)
        click.echo(f"preset on {task}: {preset_name or 'none (the defaults below)'}")
    click.echo("options (--set KEY=VALUE):")
    for key, default, help_text in describe_options(cls.Config):
        value = f"{preset[key]!r} (preset; default {default!r})" if key in preset else repr(default)
        click.echo(f"  {key} = {value}\n      {help_text}")
    for field, attr in getattr(cls, "follows_run", {}).items():
        click.echo(f"  ({field} follows the run's --{attr} unless set)")


@main.command()
@click.option("--task", required=True, help="task whose prepared model to build (e.g. fever-minilm)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-dir", default=None, type=click.Path())
@click.option("--own-data", is_flag=True, help="accept local data files whose sha256 differs from DATA.md")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a task option")
def prepare(task, device, data_dir, own_data, sets) -> None:
    """Build and cache a task's prepared model (e.g. FEVER fine-tuning, paper Appendix A.4)."""
    from editbench.config import parse_sets
    from editbench.data import check_data_dir, own_data as own_data_scope, user_cache
    from editbench.files import sweep_staging
    from editbench.registry import create
    from editbench.runner import resolve_device

    sweep_staging(user_cache())
    check_data_dir(data_dir)
    with own_data_scope(own_data):
        info = create("task", task, parse_sets(sets), data_dir=data_dir).prepare(resolve_device(device))
    click.echo(prepare_summary(task, info))


def prepare_summary(task: str, info: dict) -> str:
    """One line saying what `Task.prepare` did, from the info it returned."""
    if not info:
        return f"{task}: nothing to prepare"
    where = info.get("path") or info.get("folder") or info.get("model_dir") or info.get("checkpoint")
    reused = info.get("reused")
    numbers = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool))
    if isinstance(info.get("model"), str):
        numbers = ", ".join(filter(None, [f"model {info['model']}", numbers]))
    state = "reused" if reused else "prepared" if reused is not None else "ready"
    return f"{task}: {state}" + (f" at {where}" if where else "") + (f" ({numbers})" if numbers else "")


@main.command()
@click.option("--task", required=True, help="task whose model the edit was made on")
@click.option("--edit", "edit_dir", required=True, type=click.Path(file_okay=False),
              help="folder written by `editbench run --save-edit` (or EditOutcome.save)")
@click.option("--out-model", default=None, type=click.Path(),
              help="folder for the edited model (save_pretrained: loadable by transformers without editbench); "
                   "optional with --score")
@click.option("--revert", is_flag=True, help="subtract the saved shifts instead (e.g. from a model saved with --save-model)")
@click.option("--force", is_flag=True, help="apply even when the model's fingerprint is not the one the edit was made on")
@click.option("--score", is_flag=True, help="score the edited facts on the result and compare with the saved scores")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default=None, help="model dtype (default: the one the edit was made in)")
@click.option("--data-dir", default=None, type=click.Path())
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a task option (e.g. model=PATH)")
def apply(task, edit_dir, out_model, revert, force, score, device, dtype, data_dir, sets) -> None:
    """Add a saved edit's weight shifts to TASK's model (or take them back) and save the result."""
    import torch

    from editbench.config import parse_sets
    from editbench.data import check_data_dir
    from editbench.edits import apply_edit, load_edit, save_model
    from editbench.metrics import aggregate
    from editbench.provenance import model_fingerprint
    from editbench.registry import create
    from editbench.runner import check_dtype, load_model, resolve_device

    if out_model is None and not score:
        raise EditbenchError("nothing to do: give --out-model DIR (the edited model) and/or --score")
    saved = load_edit(edit_dir)
    device = resolve_device(device)
    dtype = dtype or saved.info.get("dtype") or "float32"
    check_dtype(dtype, device)
    check_data_dir(data_dir)
    task_obj = create("task", task, parse_sets(sets), data_dir=data_dir)
    model = load_model(task_obj, device, getattr(torch, dtype))
    requests = saved.requests() if score and not revert else []
    pre = task_obj.evaluate(model, requests) if requests else None
    apply_edit(model, saved, sign=-1.0 if revert else 1.0, force=force)
    fingerprint = model_fingerprint(model)
    expected = saved.info.get("model_fingerprint" if revert else "edited_fingerprint")
    click.echo(f"{'took back' if revert else 'applied'} {len(saved.deltas)} weight shifts of {saved.info.get('method')} "
               f"({saved.info.get('edits')} facts); model {fingerprint[:16]}"
               + ("" if not expected else ", bit-identical to the saved run's" if fingerprint == expected
                  else f", differs from the saved run's {expected[:16]} in rounding"))
    if requests:
        post = {**aggregate(task_obj.evaluate(model, requests), pre), **task_obj.extra_metrics(model, requests)}
        same = post == saved.info.get("post")
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        click.echo(f"  post-edit es {fmt(post['es'])}, gs {fmt(post['gs'])}, ls {fmt(post['ls'])}: "
                   + ("exactly the saved run's scores" if same else f"the saved run had {saved.info.get('post')}"))
    if out_model is not None:
        save_model(model, task_obj.tokenizer, out_model, {"edit": str(edit_dir), "revert": revert,
                                                          "model_fingerprint": fingerprint})
        click.echo(f"  wrote {out_model}")


@main.command()
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="the curated results store (a missing or empty folder is an error: tables are never rewritten from it)")
@click.option("--out", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@click.option("--check", is_flag=True,
              help="exit 1 if the tables, the data behind the plots or the HTML page in --out differ from what the "
                   "results give, or the results hold dirty-tree runs")
def leaderboard(results_dir, out, check) -> None:
    """Render the leaderboards from the results store: per task a markdown table (m as a dimension),
    plots (SVG + their data as CSV), the paper comparison and one HTML page."""
    from editbench import leaderboard as lb
    from editbench import report
    from editbench.results import read_runs

    records = read_runs(Path(results_dir))
    if check:
        files = report.render(records, draw=False)  # SVGs are checked by the data they name
        stale = report.check(files, Path(out))
        dirty = lb.committed(records)[1]
        if dirty:
            click.echo(f"editbench: {results_dir} holds {dirty} run(s) from a dirty or unknown tree "
                       "(commit null or '-dirty'): re-run them from a clean commit", err=True)
        if stale:
            click.echo(f"editbench: leaderboards out of date: {', '.join(stale)} (run `editbench leaderboard`)", err=True)
            sys.exit(1)
        if dirty:
            sys.exit(1)
        click.echo(f"leaderboards up to date ({len(files)} files)")
        return
    files = report.render(records)
    report.write(files, Path(out))
    click.echo(f"wrote {len(files)} files to {out}/ (tables, plots and their data, paper.md, index.html)")


from editbench.sweep.cli import sweep  # noqa: E402  (click only: --help stays fast)

main.add_command(sweep)

if __name__ == "__main__":
    main()
