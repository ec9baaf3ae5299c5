"""MALMEN (Tan et al., ICLR 2024) and its ablations (Table 1, Sec. 5.2), on the shared hyper-network."""
from dataclasses import dataclass, field

from editbench.methods.hypernet import HypernetConfig, HypernetMethod


class Malmen(HypernetMethod):
    name = "malmen"
    description = "MALMEN: hyper-network value differences aggregated by the normal equation (Tan et al. 2024)"


class MalmenSumShifts(Malmen):
    name = "malmen-sum-shifts"
    description = "MALMEN ablation: sum the rank-one shifts as MEND does instead of the normal equation"
    aggregation = "sum"


class MalmenNoReg(Malmen):
    name = "malmen-no-reg"
    description = "MALMEN ablation: lambda = 0; a singular U U^T is reported as an error (the paper's failure)"
    no_reg = True


@dataclass
class CacheAllConfig(HypernetConfig):
    """Every token's keys include rows repeated across requests (a chat template's opening) and the first
    token's massive activations: `U U^T` summed in float32 is numerically indefinite at a small ridge
    (counterfact-smollm2, m = 64), so this ablation sums and solves in float64 by default."""

    solve_dtype: str = field(default="float64", metadata=HypernetConfig.__dataclass_fields__["solve_dtype"].metadata)


class MalmenCacheAll(Malmen):
    name = "malmen-cache-all"
    description = "MALMEN ablation: cache the keys and value gradients of every token, not only the answer's"
    Config = CacheAllConfig
    answer_only = False


class MalmenFirstFC(Malmen):
    name = "malmen-first-fc"
    description = "MALMEN ablation: edit the first FFN linear layer instead of the second"
    role = "malmen-first-fc"


__all__ = ["CacheAllConfig", "HypernetConfig", "Malmen", "MalmenCacheAll", "MalmenFirstFC", "MalmenNoReg", "MalmenSumShifts"]
