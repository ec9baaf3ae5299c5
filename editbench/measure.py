"""Wall time, CPU time and peak memory of one phase of a run, with the peak counters reset at its start.

CPU: the process's peak resident set (Linux `VmHWM`, reset by writing 5 to /proc/self/clear_refs).
GPU: `torch.cuda.max_memory_allocated` (reset per phase) and the device's used memory through
NVML (`pynvml`, from the nvidia-ml-py package), sampled every 20 ms by a background thread.

The peak counters include what was resident before the phase (the loaded model, earlier phases'
caches); `peak_above_start_bytes` is what the phase itself added on top: the peak minus the
resident memory (CPU) or the torch-allocated memory (GPU) at the phase's start.
"""
from __future__ import annotations

import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _read_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (Linux `VmRSS`; None where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since the last reset (or since start)."""
    hwm = _read_hwm()
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _NvmlSampler:
    """Highest `used` memory NVML reports for one GPU while running."""

    def __init__(self, index: int):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))
            self._stop.wait(0.02)

    def __enter__(self) -> "_NvmlSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))


@dataclass
class PhaseStats:
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process (all threads): wall time without the other processes' load
    peak_memory_bytes: int = 0  # GPU: torch peak allocated; CPU: peak RSS
    peak_rss_bytes: int = 0
    peak_gpu_nvml_bytes: int | None = None
    peak_gpu_torch_bytes: int | None = None
    start_memory_bytes: int | None = None  # GPU: torch allocated at the start; CPU: RSS at the start
    peak_above_start_bytes: int | None = None  # peak_memory_bytes - start_memory_bytes (>= 0)
    extra: dict = field(default_factory=dict)


class Phase:
    """`with Phase(device) as stats:` measures the block; `stats` is filled on exit."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.stats = PhaseStats()
        self._sampler: _NvmlSampler | None = None

    def __enter__(self) -> PhaseStats:
        import torch

        self._cuda = self.device.startswith("cuda") and torch.cuda.is_available()
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            try:
                index = torch.device(self.device).index or 0
                self._sampler = _NvmlSampler(index).__enter__()
            except Exception:  # NVML missing (e.g. no driver access): torch's counter still works
                self._sampler = None
        reset = _reset_hwm()
        if self._cuda:
            self.stats.start_memory_bytes = int(torch.cuda.memory_allocated())
        elif reset:  # without a reset VmHWM is the whole process's peak: nothing to subtract from
            self.stats.start_memory_bytes = current_rss_bytes()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()
        return self.stats

    def __exit__(self, *exc) -> None:
        import torch

        if self._cuda:
            torch.cuda.synchronize()
        self.stats.seconds = time.perf_counter() - self._start
        self.stats.cpu_seconds = time.process_time() - self._cpu_start
        self.stats.peak_rss_bytes = peak_rss_bytes()
        self.stats.peak_memory_bytes = self.stats.peak_rss_bytes
        if self._cuda:
            self.stats.peak_gpu_torch_bytes = int(torch.cuda.max_memory_allocated())
            self.stats.peak_memory_bytes = self.stats.peak_gpu_torch_bytes
        if self.stats.start_memory_bytes is not None:
            # VmHWM is reset to the RSS of the moment, so the peak is never below the start.
            self.stats.peak_above_start_bytes = max(0, self.stats.peak_memory_bytes - self.stats.start_memory_bytes)
        if self._sampler is not None:
            self._sampler.__exit__()
            self.stats.peak_gpu_nvml_bytes = self._sampler.peak
