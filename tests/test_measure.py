"""Per-phase peak memory: the absolute peak, and the peak above the phase's starting memory."""
import os

import pytest
import torch

from editbench.measure import Phase

MIB = 2**20


def _hwm_resettable() -> bool:
    return os.access("/proc/self/clear_refs", os.W_OK)


@pytest.mark.skipif(not _hwm_resettable(), reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
def test_cpu_peak_above_start_counts_only_what_the_phase_added():
    held = torch.ones(64 * MIB // 4)  # resident before the phase: in the peak, not above the start
    with Phase("cpu") as stats:
        inside = torch.ones(96 * MIB // 4)  # 96 MiB touched inside the phase, then freed
        del inside
    assert stats.start_memory_bytes >= 64 * MIB
    assert stats.peak_memory_bytes >= stats.start_memory_bytes + 90 * MIB
    # Independent expectation: the phase allocated 96 MiB (a little more for the interpreter).
    assert 90 * MIB <= stats.peak_above_start_bytes <= 96 * MIB + 24 * MIB
    assert stats.peak_above_start_bytes == stats.peak_memory_bytes - stats.start_memory_bytes
    del held


@pytest.mark.skipif(not _hwm_resettable(), reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
def test_a_phase_that_allocates_nothing_has_a_small_peak_above_start():
    held = torch.ones(64 * MIB // 4)
    with Phase("cpu") as stats:
        held.add_(1)  # in place: no new memory
    assert stats.peak_above_start_bytes < 16 * MIB
    assert stats.peak_memory_bytes >= 64 * MIB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_peak_above_start_is_above_the_allocated_memory_at_the_start():
    held = torch.ones(64 * MIB // 4, device="cuda")
    with Phase("cuda") as stats:
        inside = torch.ones(96 * MIB // 4, device="cuda")
        del inside
    assert stats.start_memory_bytes >= 64 * MIB
    assert stats.peak_above_start_bytes == 96 * MIB  # the caching allocator rounds to 2 MiB blocks
    assert stats.peak_memory_bytes == stats.start_memory_bytes + 96 * MIB
    del held
