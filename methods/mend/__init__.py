"""MEND (Mitchell et al., 2022) re-implemented for simultaneous edits as the MALMEN paper compares it.

Same hyper-network as MALMEN (`editbench.methods.hypernet`), shifts summed over every token
(`S* = -eta grad~_V U~^T`, Appendix A.2). `mend` is the paper's MEND (Sec. 5.1, A.7): MALMEN's
layers (the second FFN linear of the last 6 blocks), so that `mend` vs `malmen` differs only in
the aggregation (sum vs normal equation) and the cached tokens (all vs the answer's).
`mend-mitchell` keeps Mitchell et al.'s own layer choice: both FFN linears of the last 3 blocks.
`training_mode` selects the economic split back-propagation (Sec. 4.2) or MEND's original
concatenated graph; both give the same meta-gradient.
"""
from editbench.methods.hypernet import HypernetConfig, HypernetMethod


class Mend(HypernetMethod):
    name = "mend"
    description = "MEND as the MALMEN paper compares it: rank-one shifts summed over all tokens, MALMEN's layers"
    role = "malmen"
    answer_only = False
    aggregation = "sum"


class MendMitchell(Mend):
    name = "mend-mitchell"
    description = "MEND with Mitchell et al.'s layers (both FFN linears of the last 3 blocks), shifts summed over all tokens"
    role = "mend"


__all__ = ["HypernetConfig", "Mend", "MendMitchell"]
