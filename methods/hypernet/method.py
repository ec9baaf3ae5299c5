"""`HypernetMethod`: the Method shared by MALMEN, its ablations and MEND (prepare = train or load, edit)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from editbench.api import EditRequest, EditResult, Method, Task
from editbench.errors import CorruptArtifact, EditbenchError
from editbench.files import warn
from editbench.methods.hypernet.checkpoint import load_editor, resume_path, save_editor
from editbench.methods.hypernet.config import HypernetConfig
from editbench.methods.hypernet.meta import EditorSetup
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.shifts import AGGREGATIONS
from editbench.methods.hypernet.training import apply_editor, train_editor
from editbench.modules import get_module, shape_of
from editbench.provenance import config_key

SOLVE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
TRAINING_MODES = ("economic", "concatenated")


class HypernetMethod(Method):
    """A hyper-network editor. Subclasses fix the variant through the class attributes below."""

    Config: ClassVar[type] = HypernetConfig
    role: ClassVar[str] = "malmen"  # which `Task.edit_modules` role (overridden by the `layers` setting)
    answer_only: ClassVar[bool] = True  # cache the answer tokens only (False: every token)
    aggregation: ClassVar[str] = "normal"  # 'normal' equation or 'sum' of shifts
    no_reg: ClassVar[bool] = False  # lambda = 0
    # Each run seed trains its own editor, at the m it is evaluated with (the paper's protocol).
    follows_run: ClassVar[dict[str, str]] = {"seed": "seed", "train_edits": "edits"}

    def __init__(self, config: Any = None):
        super().__init__(config)
        cfg = self.config
        if cfg.training_mode not in TRAINING_MODES:
            raise EditbenchError(f"training_mode {cfg.training_mode!r} is not one of {', '.join(TRAINING_MODES)}")
        if cfg.solve_dtype not in SOLVE_DTYPES:
            raise EditbenchError(f"solve_dtype {cfg.solve_dtype!r} is not one of {', '.join(SOLVE_DTYPES)}")
        if self.aggregation not in AGGREGATIONS:
            raise EditbenchError(f"aggregation {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        self.editor: Editor | None = None

    # -- building blocks -----------------------------------------------------------------------
    def setup(self, task: Task, model: nn.Module | None = None) -> EditorSetup:
        cfg = self.config
        names = self.modules(task, model) if model is not None else task.edit_modules(self.role)
        return EditorSetup(
            names=names, answer_only=self.answer_only, aggregation=self.aggregation,
            no_reg=self.no_reg, lm_batch_size=cfg.lm_batch_size, chunk_size=cfg.chunk_size,
            solve_dtype=SOLVE_DTYPES[cfg.solve_dtype], loc_coef=cfg.loc_coef)

    def build_editor(self, task: Task, model: nn.Module) -> Editor:
        cfg = self.config
        names = self.modules(task, model)
        torch.manual_seed(cfg.seed)
        editor = Editor({n: shape_of(get_module(model, n)) for n in names}, cfg.rank, cfg.blocks, cfg.init_lr,
                        cfg.init_log_ridge)
        param = next(model.parameters())
        return editor.to(device=param.device, dtype=torch.float64 if param.dtype == torch.float64 else torch.float32)

    def checkpoint_path(self, task: Task, model: nn.Module, cache_dir: Path) -> Path:
        cfg = dataclasses.asdict(self.config)
        cfg.pop("checkpoint", None)
        names = self.modules(task, model)
        task_config = dataclasses.asdict(task.config) if dataclasses.is_dataclass(task.config) else {}
        task_config.pop("batch_size", None)  # scoring batch size: no effect on the trained editor
        payload = {"method": self.name, "task": task.name, "task_config": task_config,
                   "modules": {n: shape_of(get_module(model, n)) for n in names}, "config": cfg}
        return Path(cache_dir) / f"{self.name}-{task.name}-{config_key(payload)}.safetensors"

    # -- the Method contract -------------------------------------------------------------------
    def prepare(self, task: Task, model: nn.Module, cache_dir: Path) -> dict[str, Any]:
        """Load the trained editor from `cache_dir` or meta-train it there (Alg. 2).

        A corrupt checkpoint (removed by `load_editor`) is retrained in the same run; a killed
        training of the same checkpoint resumes from its last validation (`resume_path`).
        """
        self.editor = self.build_editor(task, model)
        path = self.checkpoint_path(task, model, cache_dir)
        if self.config.checkpoint and path.is_file():
            try:
                info = load_editor(self.editor, path)
            except CorruptArtifact as exc:
                warn(f"{exc.path} is corrupt ({exc.reason}): retraining")
                self.editor = self.build_editor(task, model)  # a failed load may have left it half-filled
            else:
                summary = {k: v for k, v in info.items() if k not in ("history", "config")}
                # The one-off cost is the training that built the checkpoint, from its provenance.
                return {"checkpoint": str(path), "reused": True, "one_off_seconds": info.get("train_seconds"), **summary}
        was_training = model.training
        model.eval()
        try:
            info = train_editor(self.editor, task, model, self.setup(task, model), self.config,
                                resume=resume_path(path) if self.config.checkpoint else None)
        finally:
            model.train(was_training)
        info = {"method": self.name, "task": task.name, "config": dataclasses.asdict(self.config), **info}
        if self.config.checkpoint:
            save_editor(self.editor, path, info)
        summary = {k: v for k, v in info.items() if k not in ("history", "config")}
        return {"checkpoint": str(path) if self.config.checkpoint else None, "reused": False,
                "one_off_seconds": info["train_seconds"], **summary}

    def edit(self, task: Task, model: nn.Module, requests: Sequence[EditRequest]) -> EditResult:
        """Alg. 1 with the prepared editor: shifts are added to the weights in place."""
        if self.editor is None:
            raise EditbenchError(f"method {self.name!r} edits with a trained editor: call prepare() first")
        was_training = model.training
        model.eval()
        try:
            deltas, stats = apply_editor(self.editor, task, model, requests, self.setup(task, model))
        finally:
            model.train(was_training)
        return EditResult(deltas=deltas, stats=stats)
