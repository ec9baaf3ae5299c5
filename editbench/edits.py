"""Saved edits: the weight shifts of one edit, kept on disk and applied to (or taken back from) a model.

A saved edit is a folder:
    deltas.safetensors   {module name: ΔW [d_out, d_in]} (the shifts the method added, as returned)
    deltas.json          sidecar: method, resolved configs, task, the fingerprint of the model the
                         edit was made on (`model_fingerprint`) and of the edited model
                         (`edited_fingerprint`), commit, the edited facts and the post-edit scores,
                         and the sha256 of deltas.safetensors (`editbench.files.write_artifact`)
    model/               optional: the edited model by `save_pretrained` (loadable by transformers alone)

`apply_edit` refuses a model whose fingerprint is not the one the edit was made on (unless forced);
taking an edit back (`sign=-1`) is bit-exact within the process that applied it
(`editbench.modules.apply_deltas`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editbench.errors import EditbenchError

DELTAS_FILE = "deltas.safetensors"
MODEL_DIR = "model"
FORMAT = "editbench-edit/1"


@dataclass
class SavedEdit:
    """A loaded saved edit: `deltas` {module: ΔW [d_out, d_in]} and its sidecar `info`."""

    deltas: dict[str, Any]
    info: dict[str, Any]
    folder: Path

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the model the edit was made on (what `apply_edit` checks)."""
        return self.info.get("model_fingerprint")

    def requests(self) -> list[Any]:
        """The edited facts as `EditRequest`s (to score the edit again)."""
        from editbench.api import EditRequest

        return [EditRequest(**{**r, "equivalents": tuple(r.get("equivalents", ())),
                               "unrelated": tuple(tuple(u) for u in r.get("unrelated", ()))})
                for r in self.info.get("requests", [])]


def save_edit(deltas: dict[str, Any], folder: str | Path, info: dict[str, Any]) -> Path:
    """Write `deltas` {module: ΔW [d_out, d_in]} to `folder/deltas.safetensors` with the sidecar
    `folder/deltas.json` holding `info` (method, config, model_fingerprint, task, commit, ...) and the
    file's sha256; both writes are atomic. Returns the path of the safetensors file."""
    from safetensors.torch import save

    from editbench.files import write_artifact

    if not deltas:
        raise EditbenchError(f"no weight shifts to save in {folder} (expected at least one module)")
    if not info.get("model_fingerprint"):
        raise EditbenchError("a saved edit needs info['model_fingerprint'] (of the model before the edit)")
    tensors = {name: delta.detach().contiguous().cpu() for name, delta in deltas.items()}
    path = Path(folder).expanduser() / DELTAS_FILE
    shapes = {name: list(t.shape) for name, t in tensors.items()}
    write_artifact(path, save(tensors, metadata={"format": FORMAT}), {"format": FORMAT, **info, "shapes": shapes})
    return path


def load_edit(folder: str | Path) -> SavedEdit:
    """The edit saved in `folder` by `save_edit`, checked against its sha256 (`CorruptArtifact` if not)."""
    from safetensors.torch import load

    from editbench.files import read_artifact

    folder = Path(folder).expanduser()
    path = folder / DELTAS_FILE
    if not path.is_file():
        raise EditbenchError(f"{folder} holds no saved edit (expected {DELTAS_FILE}, written by --save-edit)")
    payload, info = read_artifact(path)
    if info.get("format") != FORMAT:
        raise EditbenchError(f"{path} has format {info.get('format')!r}, expected {FORMAT!r}")
    return SavedEdit(load(payload), info, folder)


def check_fingerprint(edit: SavedEdit, fingerprint: str, force: bool = False) -> None:
    """`EditbenchError` naming both fingerprints when `fingerprint` (the target model's) is not the
    one `edit` was made on; with `force`, a warning instead."""
    from editbench.files import warn

    if fingerprint == edit.fingerprint:
        return
    message = (f"the edit in {edit.folder} was made on model {str(edit.fingerprint)[:16]}, this model is "
               f"{fingerprint[:16]} (expected the same weights; --force applies it anyway)")
    if not force:
        raise EditbenchError(message)
    warn(message.replace(" (expected the same weights; --force applies it anyway)", ": applied anyway (forced)"))


def apply_edit(model: Any, edit: SavedEdit | str | Path, sign: float = 1.0, force: bool = False) -> SavedEdit:
    """Add the saved shifts to `model` in place (sign=1), or take them back (sign=-1: bit-exact after
    an apply in this process). Adding checks the model's fingerprint first (see `check_fingerprint`);
    taking back checks that the model is the edited one (`edited_fingerprint`), when it was recorded."""
    from editbench.modules import apply_deltas
    from editbench.provenance import model_fingerprint

    edit = edit if isinstance(edit, SavedEdit) else load_edit(edit)
    fingerprint = model_fingerprint(model)
    if sign > 0:
        check_fingerprint(edit, fingerprint, force)
    elif edit.info.get("edited_fingerprint") and fingerprint != edit.info["edited_fingerprint"] and not force:
        raise EditbenchError(f"cannot take back the edit in {edit.folder}: this model is {fingerprint[:16]}, the "
                             f"edited model was {edit.info['edited_fingerprint'][:16]} (expected the edited weights; "
                             "--force subtracts anyway)")
    apply_deltas(model, edit.deltas, sign)
    return edit


def save_model(model: Any, tokenizer: Any, folder: str | Path, provenance: dict[str, Any]) -> Path:
    """`save_pretrained` of the model (and its tokenizer) into `folder`, atomically, with a manifest.
    The folder loads with transformers alone (`AutoModelForCausalLM.from_pretrained(folder)`)."""
    from editbench.files import atomic_folder

    folder = Path(folder).expanduser()
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None)
    try:
        with atomic_folder(folder, provenance) as staging:
            model.save_pretrained(staging)
            if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
                tokenizer.save_pretrained(staging)
    finally:
        if config is not None:  # save_pretrained fills in `architectures`: leave the live model as it was
            config.architectures = architectures
    return folder
