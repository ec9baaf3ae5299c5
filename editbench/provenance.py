"""Where a result came from: library versions, git commit, device, model fingerprint."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Collection

import torch
from torch import nn


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("editbench", "torch", "transformers", "datasets", "safetensors"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


# What a run writes into the checkout (the curated results store, the rendered leaderboards): a
# change there is output, not a change to the code that is measured.
_OUTPUT_PATHS = ("results", "leaderboards")


def git_commit(root: Path | None = None) -> str | None:
    """HEAD of the editbench checkout (with '-dirty' when tracked files other than the run outputs
    under `_OUTPUT_PATHS` changed), if it is one; `root` defaults to editbench's own checkout."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){path}" for path in _OUTPUT_PATHS)],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'unknown'})"


# Config entries that say where or how a model was loaded, not what it computes (a GGUF file's
# `quantization_config` stays on its de-quantised copy; a model that is really quantized differs
# in its tensors' dtypes, which the fingerprint hashes).
_NOT_ARCHITECTURE = ("name_or_path", "transformers_version", "torch_dtype", "dtype", "quantization_config")


def architecture_config(model: nn.Module) -> dict:
    """The model's config without paths, private (`_name_or_path`, `_commit_hash`, ...) and
    load-time entries: two copies of the same weights in two folders give the same dict."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return {}
    return {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in _NOT_ARCHITECTURE}


def _bit_sum(flat: torch.Tensor, chunk: int = 1 << 20) -> int:
    """Integer sum of the bit patterns of `flat: [n]`: exact and order-free, so every device agrees.

    Summed `chunk` values at a time: the int64 widening of a whole embedding matrix would hold
    twice its bytes (SmolLM2: 216 MiB) at once."""
    as_int = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    bits = flat.contiguous().view(as_int)
    return sum(int(bits[i:i + chunk].sum(dtype=torch.int64)) for i in range(0, bits.numel(), chunk))


def model_fingerprint(model: nn.Module, sample: int = 4096, names: Collection[str] | None = None) -> str:
    """sha256 over the model class, its architecture config, and per tensor its name, shape, dtype,
    a strided sample of `sample` values and the sum of all its values' bit patterns.

    Depends on the weights only, never on the folder they were loaded from; a changed weight
    moves the bit sum even where the sample misses it. Reads each tensor once. `names`: hash only
    these state-dict entries (default: all), so that the other tensors are never read (weights
    memory-mapped from a checkpoint stay out of resident memory).
    """
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    digest.update(json.dumps(architecture_config(model), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        if names is not None and name not in names:
            continue
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        digest.update(flat[::step][:sample].float().cpu().numpy().tobytes())
        digest.update(str(_bit_sum(flat)).encode())
    return digest.hexdigest()


def config_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
