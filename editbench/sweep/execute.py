"""Running a sweep's plan: each run is one `editbench run` process (`python -m editbench.cli run ...`),
so its time and peak memory are its own, with its output in `<out>/logs/<identity>.log`.

`drive` starts runs as the executor has room and `ArtifactGate` allows, and hands each finished
run to a callback; a failed run (non-zero exit) is reported and the sweep goes on. Executors:
`LocalExecutor` (here, `--jobs N` processes at once) and `editbench.sweep.ray_executor.RayExecutor`.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from editbench.sweep.plan import ArtifactGate, PlannedRun

POLL_SECONDS = 0.1


@dataclasses.dataclass
class RunOutcome:
    item: PlannedRun
    returncode: int
    seconds: float
    last_line: str  # the last non-empty line of the run's log (its error, when it failed)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclasses.dataclass
class RunCommand:
    """What every run of a sweep shares: the results store and the options passed to each `editbench run`."""

    out: Path
    common_args: list[str] = dataclasses.field(default_factory=list)  # e.g. --data-dir DIR, --own-data

    def args(self, item: PlannedRun) -> list[str]:
        """Arguments after the Python executable: `-m editbench.cli -v run ... --out OUT ...` (-v: the
        progress messages go into the run's log)."""
        return ["-m", "editbench.cli", "-v", "run", *item.run.run_args(), "--out", str(self.out), *self.common_args]


def last_line(log: Path) -> str:
    """The last non-empty line of `log` ('' when there is none)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log) - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def open_log(item: PlannedRun, command: list[str]) -> Any:
    """The run's log file, new, opening with the command that runs it."""
    item.log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(item.log, "w", encoding="utf-8")
    handle.write("# " + " ".join(command) + "\n")
    handle.flush()
    return handle


class Executor(Protocol):
    def has_room(self) -> bool: ...
    def start(self, item: PlannedRun) -> None: ...
    def wait_any(self) -> RunOutcome: ...
    def stop(self) -> None: ...


def drive(items: list[PlannedRun], executor: Executor, on_start: Callable[[PlannedRun], None] = lambda item: None,
          on_done: Callable[[RunOutcome], None] = lambda outcome: None) -> list[RunOutcome]:
    """Run `items` (in their order, as room and the artifact gate allow) and return their outcomes."""
    gate, pending, outcomes, running = ArtifactGate(), list(items), [], 0
    try:
        while pending or running:
            for item in list(pending):
                if not executor.has_room():
                    break
                if gate.may_start(item):
                    pending.remove(item)
                    gate.started(item)
                    on_start(item)
                    executor.start(item)
                    running += 1
            outcome = executor.wait_any()
            running -= 1
            gate.finished(outcome.item)
            outcomes.append(outcome)
            on_done(outcome)
    finally:
        executor.stop()
    return outcomes


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the sweep dies (even by SIGKILL), so no orphan run goes on
    to write a record that a resumed sweep would write again."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalExecutor:
    """Up to `jobs` runs at once as child processes of this one. Each gets `OMP_NUM_THREADS` =
    cores / jobs unless the environment sets it. SIGTERM / Ctrl-C stop the children first."""

    def __init__(self, command: RunCommand, jobs: int = 1, env: dict[str, str] | None = None):
        self.command, self.jobs = command, max(1, jobs)
        self.env = dict(os.environ if env is None else env)
        if "OMP_NUM_THREADS" not in self.env:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            self.env["OMP_NUM_THREADS"] = str(max(1, cores // self.jobs))
        self.running: dict[subprocess.Popen, tuple[PlannedRun, float, Any]] = {}
        self._restore: list[Any] = []
        try:
            self._restore.append(signal.signal(signal.SIGTERM, self._on_sigterm))
        except ValueError:  # not the main thread: the caller handles its signals
            pass

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop()
        sys.exit(128 + signum)

    def has_room(self) -> bool:
        return len(self.running) < self.jobs

    def start(self, item: PlannedRun) -> None:
        command = [sys.executable, *self.command.args(item)]
        log = open_log(item, command)
        extra = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, **extra)
        self.running[proc] = (item, time.monotonic(), log)

    def wait_any(self) -> RunOutcome:
        while True:
            for proc, (item, started, log) in list(self.running.items()):
                if proc.poll() is not None:
                    del self.running[proc]
                    log.close()
                    return RunOutcome(item, proc.returncode, time.monotonic() - started, last_line(item.log))
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """Terminate the runs still going (their records are never half-written) and wait for them."""
        for proc in self.running:
            if proc.poll() is None:
                proc.terminate()
        for proc, (_, _, log) in list(self.running.items()):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self.running.clear()
        while self._restore:
            signal.signal(signal.SIGTERM, self._restore.pop())
