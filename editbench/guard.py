"""Non-finite guard: NaN or Inf anywhere that feeds a result stops the run with one line.

A loss, a shift, a solve, statistics or the weights after an edit that hold NaN/Inf raise
`NonFiniteError` (an `EditbenchError`: exit code 2, no record written) naming the phase, the layer
and the step, e.g. `non-finite loss (nan) in ft, step 3 (epoch 2): lower lr ...`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from editbench.errors import NonFiniteError


def is_finite(value: Any) -> bool:
    """True when `value` (a tensor, a number, or None) holds no NaN/Inf."""
    if value is None:
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    import torch

    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.is_complex()):
            return True
        return bool(torch.isfinite(value).all())
    return True


def _describe(value: Any) -> str:
    """'nan', 'inf', or 'n of N values NaN/Inf' for a tensor."""
    import torch

    if isinstance(value, torch.Tensor) and value.numel() > 1:
        bad = (~torch.isfinite(value)).sum().item()
        return f"{bad} of {value.numel()} values NaN/Inf"
    number = float(value.item() if isinstance(value, torch.Tensor) else value)
    return "nan" if number != number else ("inf" if number > 0 else "-inf")


def where(phase: str, layer: str | None = None, step: Any = None) -> str:
    parts = [phase] + ([f"layer {layer}"] if layer else []) + ([f"step {step}"] if step is not None else [])
    return ", ".join(parts)


def check_finite(value: Any, what: str, phase: str, layer: str | None = None, step: Any = None,
                 hint: str = "") -> Any:
    """Return `value`, or raise `NonFiniteError` when it holds NaN/Inf."""
    if not is_finite(value):
        raise NonFiniteError(f"non-finite {what} ({_describe(value)}) in {where(phase, layer, step)}"
                             + (f": {hint}" if hint else ""))
    return value


def check_named(tensors: Iterable[tuple[str, Any]], what: str, phase: str, step: Any = None, hint: str = "") -> None:
    """`check_finite` over (layer name, tensor) pairs; the first bad one is named."""
    for name, value in tensors:
        check_finite(value, what, phase, layer=name, step=step, hint=hint)


def check_stats(stats: dict[str, Any], phase: str, hint: str = "") -> None:
    """Every number of a method's statistics (e.g. MALMEN's mean residual) must be finite."""
    for key, value in stats.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_finite(value, key, phase, hint=hint)


def check_weights(model: Any, phase: str, step: Any = None, hint: str = "") -> None:
    """All floating parameters of `model` must be finite; names the first bad one. (Buffers are
    not checked: attention masks may hold -inf on purpose.)"""
    import torch

    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                check_finite(tensor, "weights", phase, layer=name, step=step, hint=hint)
