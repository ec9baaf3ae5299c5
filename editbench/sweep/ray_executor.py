"""The Ray executor (`editbench sweep --executor ray [--ray-address auto]`, `pip install 'editbench[ray]'`).

One Ray task per run, asking for the resources the run needs (`num_gpus=1` for a CUDA run, else
`num_cpus` = the run's threads); the task runs the same `editbench run` process as the local
executor, on whichever node Ray places it. Ray does the scheduling; the sweep only holds back the
runs that wait for a shared artifact (`ArtifactGate`). The results store (`--out`) and the caches
must be on a file system every node sees; the environment variables editbench reads
(`EDITBENCH_*`, `HF_*`, `PYTHONPATH`, ...) are passed to the task.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from editbench.errors import EditbenchError
from editbench.sweep.execute import RunCommand, RunOutcome, last_line
from editbench.sweep.plan import PlannedRun

PASSED_PREFIXES = ("EDITBENCH_", "HF_", "TRANSFORMERS_", "XDG_", "CUDA_", "TORCH_")
PASSED_NAMES = ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HOME")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EditbenchError("--executor ray needs Ray, which is not installed: pip install 'editbench[ray]'") from None
    return ray


def run_logged(args: list[str], env: dict[str, str], log: str) -> tuple[int, float, str]:
    """Run `python ARGS` (this node's Python) with `env` over this process's environment, output to
    `log`; returns (exit code, seconds, last log line). The body of every Ray task."""
    command = [sys.executable, *args]
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("# " + " ".join(command) + "\n")
        handle.flush()
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, **env}).returncode
    return code, time.monotonic() - started, last_line(Path(log))


class RayExecutor:
    """Submits every run the gate allows as a Ray task; connects to `address` ('auto': a running
    cluster; None: the cluster already initialised in this process, else a local one)."""

    def __init__(self, command: RunCommand, address: str | None = None, cpus_per_run: int = 1):
        self.ray = import_ray()
        if not self.ray.is_initialized():
            self.ray.init(address=address, log_to_driver=False)
        self.command, self.cpus_per_run = command, max(1, cpus_per_run)
        self.task = self.ray.remote(run_logged)
        self.env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES}
        self.env.setdefault("OMP_NUM_THREADS", str(self.cpus_per_run))
        self.pending: dict[Any, PlannedRun] = {}

    def has_room(self) -> bool:
        return True  # Ray queues tasks until their resources are free

    def resources(self, item: PlannedRun) -> dict[str, float]:
        if item.identity.device == "cuda":
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_cpus": self.cpus_per_run}

    def start(self, item: PlannedRun) -> None:
        ref = self.task.options(**self.resources(item)).remote(self.command.args(item), self.env, str(item.log))
        self.pending[ref] = item

    def wait_any(self) -> RunOutcome:
        (ready,), _ = self.ray.wait(list(self.pending), num_returns=1)
        item = self.pending.pop(ready)
        try:
            code, seconds, line = self.ray.get(ready)
        except self.ray.exceptions.RayError as exc:
            return RunOutcome(item, 1, 0.0, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return RunOutcome(item, code, seconds, line)

    def stop(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending.clear()
