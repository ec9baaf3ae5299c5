"""MEND (Mitchell et al., 2022) re-implemented for simultaneous edits as in the MALMEN paper (Sec. 5.1, A.7).

Same hyper-network as MALMEN (`editbench.methods.hypernet`), shifts summed over every token
(`S* = -eta grad~_V U~^T`), both FFN linears of the last 3 blocks (`Task.edit_modules("mend")`).
`training_mode` selects the economic split back-propagation (Sec. 4.2) or MEND's original
concatenated graph; both give the same meta-gradient.
"""
from editbench.methods.hypernet import HypernetConfig, HypernetMethod


class Mend(HypernetMethod):
    name = "mend"
    description = "MEND: hyper-network rank-one shifts summed over all tokens (Mitchell et al. 2022), mass-editing"
    role = "mend"
    answer_only = False
    aggregation = "sum"


__all__ = ["HypernetConfig", "Mend"]
