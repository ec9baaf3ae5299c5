"""Editor checkpoints: safetensors weights plus a JSON sidecar (provenance and sha256), written
atomically, never pickled; and the resumable meta-training state (editor, Adam, best state, history).

A checkpoint whose bytes do not match the checksum in its sidecar (truncated, overwritten, or
written by an older editbench without one) is never used: `load_editor` removes it and raises
`CorruptArtifact` naming it, and the caller retrains.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from editbench.errors import CorruptArtifact
from editbench.files import read_artifact, remove_artifact, warn, write_artifact
from editbench.guard import is_finite

from editbench.methods.hypernet.network import Editor

FORMAT = "editbench-hypernet"
RESUME_FORMAT = "editbench-hypernet-training"


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_editor(editor: Editor, path: Path, info: dict[str, Any]) -> None:
    """Write `path` (.safetensors) and `path.json` (provenance: config, training history; sha256)."""
    write_artifact(path, save(_cpu(editor.state_dict()), metadata={"format": FORMAT}), info)


def _verified_tensors(path: Path, retrain_hint: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, provenance) of a checksummed safetensors artifact; a bad one is removed and named."""
    try:
        payload, info = read_artifact(path)
        tensors = load(payload)
    except CorruptArtifact as exc:
        remove_artifact(path)
        raise CorruptArtifact(path, exc.reason, retrain_hint) from None
    except SafetensorError as exc:  # the checksum matched what was written, yet it does not parse
        remove_artifact(path)
        raise CorruptArtifact(path, f"not a safetensors file: {exc}", retrain_hint) from None
    bad = [k for k, v in tensors.items() if not is_finite(v)]
    if bad:
        remove_artifact(path)
        raise CorruptArtifact(path, f"non-finite values in {bad[0]}", retrain_hint)
    return tensors, info


def load_editor(editor: Editor, path: Path) -> dict[str, Any]:
    """Load verified weights into `editor` (shapes must match); returns the sidecar's provenance."""
    hint = "removed it: run again to retrain the editor"
    state, info = _verified_tensors(path, hint)
    try:
        editor.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        remove_artifact(path)
        raise CorruptArtifact(path, f"does not fit this editor: {str(exc).splitlines()[0][:160]}", hint) from None
    return info


# -- resumable meta-training ---------------------------------------------------------------------
def resume_path(checkpoint: Path) -> Path:
    """`<checkpoint>.resume.safetensors`: the last validated meta-training state of that checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".resume.safetensors")


def save_training_state(path: Path, editor: Editor, optimizer: torch.optim.Optimizer,
                        best_state: dict[str, torch.Tensor], progress: dict[str, Any]) -> None:
    """Editor and best state, Adam's moments (tensors) and the progress (step, history, ...) (JSON)."""
    tensors = {f"editor/{k}": v for k, v in _cpu(editor.state_dict()).items()}
    tensors.update({f"best/{k}": v for k, v in _cpu(best_state).items()})
    optim = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, state in optim["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    write_artifact(path, save(tensors, metadata={"format": RESUME_FORMAT}),
                   {"format": RESUME_FORMAT, "progress": progress, "param_groups": optim["param_groups"],
                    "optim_scalars": scalars})


def load_training_state(path: Path, editor: Editor, optimizer: torch.optim.Optimizer
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Restore `editor` and `optimizer` from `path`; returns (best state, progress), or None when
    there is nothing to resume (a corrupt state is removed with a warning: training starts over)."""
    if not Path(path).is_file():
        return None
    editor_before = {k: v.detach().clone() for k, v in editor.state_dict().items()}
    optim_before = optimizer.state_dict()
    try:
        tensors, info = _verified_tensors(path, "starting meta-training over")
        groups: dict[str, dict[str, Any]] = {}
        for key, value in tensors.items():
            part, _, rest = key.partition("/")
            groups.setdefault(part, {})[rest] = value
        state: dict[int, dict[str, Any]] = {}
        for key, value in groups.get("optim", {}).items():
            index, _, name = key.partition("/")
            state.setdefault(int(index), {})[name] = value
        for key, value in info["optim_scalars"].items():
            index, _, name = key.partition("/")
            state.setdefault(int(index), {})[name] = value
        editor.load_state_dict(groups["editor"], strict=True)
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        device = next(editor.parameters()).device
        best = {k: v.to(device) for k, v in groups["best"].items()}
        return best, info["progress"]
    except CorruptArtifact as exc:
        warn(str(exc))
    except (KeyError, ValueError, RuntimeError) as exc:
        remove_artifact(path)
        warn(f"saved meta-training state {path} does not fit ({type(exc).__name__}); starting meta-training over")
    editor.load_state_dict(editor_before)  # a half-restored state must not leak into a fresh start
    optimizer.load_state_dict(optim_before)
    return None
