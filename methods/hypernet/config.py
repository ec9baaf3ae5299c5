"""Hyper-parameters shared by MALMEN and MEND (paper, Appendix A.6) and the meta-training budget.

The A.6 values are the paper's. The budget (`train_steps`, `valid_every`, `valid_edits`,
`patience`) is a task's business: the defaults are a small generic budget, and a task's preset
(`tasks/common/presets.py`) sets the one its model needs (SmolLM2 on 2 CPU cores: 24 steps of m = 16).
`train_edits` and `seed` follow the run's `--edits` and `--seed` unless a preset or `--set` gives
them (`HypernetMethod.follows_run`): the paper trains at the evaluation's m until validation stops
improving, and each seed is an independently trained editor.

`lr_meta_lr` (MEND's separate learning rate of the step sizes, 1e-4 in Mitchell et al.'s config)
is not in A.6: with Adam, eta moves about `lr_meta_lr` per step from its 1e-6 start, and on
SmolLM2 a useful eta is about 1e-3 (an untrained editor at eta = 1e-3 already edits), so with the
A.6 meta lr alone a short budget would end before eta is useful. Set it to 0 to use `meta_lr`.
"""
from dataclasses import dataclass, field

from editbench.api import MethodConfig
from editbench.config import count, finite, non_negative, one_of, positive


@dataclass
class HypernetConfig(MethodConfig):
    # -- the hyper-network (A.1, A.6) ----------------------------------------------------------
    rank: int = field(default=1920, metadata={"help": "rank of each low-rank block, capped by the width d+d' (A.6)", "check": count})
    blocks: int = field(default=2, metadata={"help": "residual low-rank blocks in the hyper-network (A.6)", "check": non_negative})
    init_lr: float = field(default=1e-6, metadata={"help": "initial per-layer edit step size eta (A.6)", "check": positive})
    init_log_ridge: float = field(default=0.0, metadata={"help": "initial theta of the ridge lambda = exp(theta)", "check": finite})
    # -- meta-training (Sec. 4.2, A.6) ---------------------------------------------------------
    meta_lr: float = field(default=1e-5, metadata={"help": "Adam learning rate of the hyper-network (A.6)", "check": positive})
    lr_meta_lr: float = field(default=1e-4, metadata={
        "help": "Adam learning rate of the per-layer step sizes eta (MEND's lr_lr); 0 = use meta_lr", "check": non_negative})
    loc_coef: float = field(default=1.0, metadata={"help": "locality coefficient lambda_loc of L_meta (A.6)", "check": non_negative})
    max_grad_norm: float = field(default=1.0, metadata={"help": "meta-gradient norm clip (A.6)", "check": positive})
    training_mode: str = field(default="economic", metadata={
        "help": "'economic' (Alg. 2: split back-propagation) or 'concatenated' (editor graph attached to the LM)",
        "check": one_of("economic", "concatenated")})
    # -- budget (a task's preset sets its own, see module docstring) --------------------------
    train_steps: int = field(default=60, metadata={"help": "maximum meta-training steps", "check": count})
    train_edits: int = field(default=16, metadata={"help": "simultaneous edits m per meta-training step", "check": count})
    lm_batch_size: int = field(default=64, metadata={"help": "tuples per LM forward/backward pass", "check": count})
    chunk_size: int = field(default=4096, metadata={"help": "cached (key, value grad) rows per hyper-network pass", "check": count})
    valid_every: int = field(default=10, metadata={"help": "meta-training steps between validations", "check": count})
    valid_edits: int = field(default=32, metadata={"help": "edits of the 'valid' split per validation", "check": count})
    patience: int = field(default=3, metadata={"help": "validations without improvement before early stopping", "check": count})
    seed: int = field(default=0, metadata={"help": "seed of the hyper-network init and of the training samples", "check": finite})
    # -- numerics ------------------------------------------------------------------------------
    solve_dtype: str = field(default="float32", metadata={
        "help": "dtype of the d x d normal-equation solve: float32 or float64", "check": one_of("float32", "float64")})
    checkpoint: bool = field(default=True, metadata={"help": "save the trained editor under cache_dir and reuse it"})
