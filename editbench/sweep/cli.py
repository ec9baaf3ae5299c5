"""`editbench sweep`: run a grid of benchmark runs, resumably, locally or on Ray."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from editbench.errors import EditbenchError

EXAMPLES = """
\b
Examples:
  editbench sweep --method ft,memit --task zsre-smollm2 --edits 16,64 --seeds 0,1,2 --out sweep-store
  editbench sweep --method ft --task zsre-smollm2 --edits 32 --set lr=1e-5,1e-4 --dry-run
  editbench sweep --preset embedded --out results --jobs 2       # the embedded grid (many CPU-hours)
  editbench sweep --preset ci --out ci-store --compare results    # CI: re-run, compare with the committed records
  editbench sweep --preset fig5 --device cuda --executor ray --ray-address auto --out /shared/store
  editbench sweep --list-presets
"""


@click.command(epilog=EXAMPLES)
@click.option("--preset", default=None, metavar="NAME|FILE.toml", help="a shipped grid (see --list-presets) or a TOML file")
@click.option("--method", "methods", default=None, metavar="M1,M2", help="methods (replace the preset's)")
@click.option("--task", "tasks", default=None, metavar="T1,T2", help="tasks (replace the preset's)")
@click.option("--edits", default=None, metavar="M1,M2", help="edit counts m (replace the preset's)")
@click.option("--seeds", default=None, metavar="S1,S2", help="seeds (replace the preset's; default 0)")
@click.option("--set", "sets", multiple=True, metavar="KEY=V1,V2",
              help="a --set grid: each value is one run (commas inside [...] do not split); adds to the preset's")
@click.option("--rounds", default=None, metavar="T1,T2", help="sequential editing: passed to each run as --rounds T")
@click.option("--eval-each-round", is_flag=True, help="passed to every run (with --rounds: score after each round)")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (replaces the preset's; default cpu)")
@click.option("--dtype", default=None, help="float32, bfloat16, float16 (replaces the preset's; default float32)")
@click.option("--out", default=None, type=click.Path(),
              help="results store (as `editbench run --out`); logs go to OUT/logs/<run>.log")
@click.option("--data-dir", default=None, type=click.Path(), help="passed to every run")
@click.option("--own-data", is_flag=True, help="passed to every run")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="local runs at once (each gets OMP_NUM_THREADS = cores / jobs unless set)")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster address ('auto': a running cluster; default: a local one)")
@click.option("--cpus-per-run", default=1, show_default=True, type=click.IntRange(min=1),
              help="Ray: CPUs asked for each CPU run (and its OMP_NUM_THREADS unless set)")
@click.option("--dry-run", is_flag=True, help="print every run and its decision (run, redo, done, skip), run nothing")
@click.option("--compare", "compare_to", default=None, type=click.Path(),
              help="after running, compare each record with the committed record of the same run in this folder")
@click.option("--list-presets", is_flag=True, help="list the shipped presets with their run counts")
def sweep(preset, methods, tasks, edits, seeds, sets, rounds, eval_each_round, device, dtype, out, data_dir, own_data, jobs, executor,
          ray_address, cpus_per_run, dry_run, compare_to, list_presets) -> None:
    """Run every combination of methods x tasks x edit counts x seeds (x --set values), one `editbench run`
    process each. Resumable: a run whose record is in the store is skipped, an interrupted one redone."""
    from editbench.results import default_store
    from editbench.sweep.grid import Grid, parse_ints, parse_set_grid, split_values
    from editbench.sweep.presets import Preset, load_preset

    if list_presets:
        _list_presets()
        return
    if preset is None and methods is None:
        raise EditbenchError("editbench sweep needs --preset NAME or --method M1,M2 (with --task and --edits)")
    chosen = load_preset(preset) if preset else Preset("command line", None, "", [Grid(["ft"], ["zsre-smollm2"], [32])])
    for grid in chosen.grids:
        if methods is not None:
            grid.methods = split_values(methods)
        if tasks is not None:
            grid.tasks = split_values(tasks)
        if edits is not None:
            grid.edits = parse_ints(edits, "--edits")
        if seeds is not None:
            grid.seeds = parse_ints(seeds, "--seeds")
        if rounds is not None:
            grid.rounds = parse_ints(rounds, "--rounds")
        grid.sets = {**grid.sets, **parse_set_grid(sets)}
        grid.device, grid.dtype = device or grid.device, dtype or grid.dtype
        grid.check("the sweep")
    store = Path(out).expanduser() if out else default_store()
    common = (["--data-dir", str(data_dir)] if data_dir else []) + (["--own-data"] if own_data else []) \
        + (["--eval-each-round"] if eval_each_round else [])
    code = run_sweep(chosen, store, common, jobs=jobs, executor=executor, ray_address=ray_address,
                     cpus_per_run=cpus_per_run, dry_run=dry_run, compare_to=compare_to, data_dir=data_dir)
    sys.exit(code)


def _list_presets() -> None:
    from editbench.sweep.grid import expand
    from editbench.sweep.presets import load_preset, shipped

    for name in shipped():
        preset = load_preset(name)
        count = len({run for grid in preset.grids for run in expand(grid)})
        click.echo(f"{name:<10} {count:>5} runs  {preset.description}")


def run_sweep(preset, store: Path, common_args: list[str], *, jobs: int = 1, executor: str = "local",
              ray_address: str | None = None, cpus_per_run: int = 1, dry_run: bool = False,
              compare_to: str | None = None, data_dir: str | None = None) -> int:
    """Plan, (dry-)run and optionally compare; returns the exit code (1 when a run failed or differed)."""
    from editbench.sweep.estimate import estimate
    from editbench.sweep.execute import LocalExecutor, RunCommand
    from editbench.sweep.plan import CurrentCode, SplitSizes, make_plan, store_records

    current_code = CurrentCode()  # source hashes, read once for the plan and the estimate
    planned = make_plan(preset.grids, store, sizes=SplitSizes(data_dir), code=current_code)
    counts = {d: sum(p.decision == d for p in planned) for d in ("run", "redo", "done", "skip")}
    click.echo(f"sweep {preset.name}: {len(planned)} runs into {store}: " + ", ".join(
        f"{n} {d}" for d, n in counts.items() if n) + ("" if planned else "nothing to do"))
    cost = estimate(planned, store_records(store), current_code)
    if any(p.to_run for p in planned):
        click.echo("  " + cost.describe(jobs if executor == "local" else 1))
    if dry_run:
        for index, item in enumerate(planned):
            priced = f" [~{_duration(cost.each[index])}]" if index in cost.each else ""
            click.echo("  " + item.describe() + priced)
        return 0
    for item in planned:
        if item.decision == "skip":
            click.echo(f"  skip  {item.run.label()}: {item.reason}")
    to_run = [item for item in planned if item.to_run]
    failures = []
    if to_run:
        command = RunCommand(store, common_args)
        if executor == "ray":
            from editbench.sweep.ray_executor import RayExecutor

            engine = RayExecutor(command, ray_address, cpus_per_run)
        else:
            engine = LocalExecutor(command, jobs)
        failures = _execute(to_run, engine, store)
    code = 0
    if failures:
        click.echo(f"{len(failures)} of {len(to_run)} runs failed:", err=True)
        for outcome in failures:
            click.echo(f"  {outcome.item.run.label()}: exit {outcome.returncode}: {outcome.last_line} "
                       f"(log {outcome.item.log})", err=True)
        code = 1
    if compare_to is not None:
        from editbench.sweep.compare import differences

        lines = differences(planned, store, Path(compare_to), preset.tolerance)
        for line in lines:
            click.echo(f"differs: {line}", err=True)
        checked = sum(p.decision != "skip" for p in planned)
        click.echo(f"compared {checked} runs with {compare_to}: " + (f"{len(lines)} differences" if lines else "all equal"))
        code = code or (1 if lines else 0)
    return code


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _execute(to_run, engine, store: Path) -> list:
    """Run the plan with a progress bar and one line per finished run; returns the failed outcomes."""
    import tqdm

    from editbench.sweep.execute import drive
    from editbench.sweep.plan import stored_records

    tqdm.tqdm.monitor_interval = 0  # no monitor thread: children are forked from this process
    failures = []
    with tqdm.tqdm(total=len(to_run), unit="run", desc="sweep", file=sys.stderr, dynamic_ncols=True) as bar:
        def done(outcome) -> None:
            bar.update(1)
            label = outcome.item.run.label()
            record = None
            if outcome.ok:
                found = stored_records(store).get(outcome.item.identity)
                record = max(found, key=lambda r: str(r.get("timestamp", ""))) if found else None
                if record is None:
                    outcome.returncode, outcome.last_line = 1, f"exited 0 but wrote no record to {store}"
            if record is None:
                failures.append(outcome)
                bar.write(f"FAIL {label}: exit {outcome.returncode} after {outcome.seconds:.0f} s: {outcome.last_line}")
            else:
                bar.write(f"ok   {label}: {summary(record)} ({outcome.seconds:.0f} s)")

        drive(to_run, engine, on_start=lambda item: bar.set_postfix_str(item.run.label()), on_done=done)
    return failures


def summary(record: dict) -> str:
    """ES/GS/LS/retention before -> after, edit time and peak memory of a record, in one line."""
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    scores = ", ".join(f"{key.upper() if key != 'retention' else key} {fmt(record['pre'].get(key))}->"
                       f"{fmt(record['post'].get(key))}" for key in ("es", "gs", "ls", "retention"))
    return (f"{scores}; edit {record.get('edit_seconds', 0):.1f} s, "
            f"peak {(record.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB")
