"""Per-model settings of each method: what the reference code keeps as one hyper-parameter file per
model. A task sets `method_presets` to one of these dicts (method name -> {config field: value});
the runner applies it over the method's defaults and under the user's `--set`, and records it.
An ablation inherits its method's entry (`Task.preset_for` walks the method's base classes).

Paper-tier models (GPT-2, GPT-J, T5-XL, BERT) keep the paper's settings, which are the configs'
defaults (MALMEN A.6; MEMIT's published GPT-J file): their dicts hold only what differs.
"""
from __future__ import annotations

from typing import Any

# MALMEN / MEND on the embedded SmolLM2 on 2 CPU cores: the A.6 hyper-parameters, with a training
# budget that fits a CPU (the paper trains until validation stops improving, on a GPU, for hours).
# The training m follows the run's --edits (the paper's protocol), the seed follows --seed.
_HYPERNET_SMOLLM2: dict[str, Any] = {
    "train_steps": 40,  # at most; early stopping usually ends sooner
    "valid_every": 5,
    "valid_edits": 64,  # the 'valid' split has 100 requests
    "patience": 3,
}

SMOLLM2_PRESETS: dict[str, dict[str, Any]] = {
    "malmen": dict(_HYPERNET_SMOLLM2),
    "mend": dict(_HYPERNET_SMOLLM2),
    "memit": {},
}

GPT2_PRESETS: dict[str, dict[str, Any]] = {}
GPTJ_PRESETS: dict[str, dict[str, Any]] = {}
