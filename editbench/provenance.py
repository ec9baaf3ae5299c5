"""Where a result came from: library versions, git commit, device, model fingerprint."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

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


def git_commit() -> str | None:
    """HEAD of the editbench checkout (with '-dirty' when tracked files changed), if it is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'unknown'})"


def model_fingerprint(model: nn.Module, sample: int = 4096) -> str:
    """sha256 over the config, parameter names/shapes/dtypes and a strided sample of each tensor.

    Cheap even for GPT-J (reads ~`sample` values per tensor), and changes when weights change.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        digest.update(flat[::step][:sample].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def config_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
