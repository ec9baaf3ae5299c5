"""The low-rank hyper-network editor shared by MALMEN and MEND (MALMEN paper, Sec. 4, App. A.1, A.2).

- `network`: g_theta (one net per weight shape), step sizes eta and ridges lambda;
- `capture`: keys and value gradients of the edited layers;
- `solve`: normal equation, Theorems 1 and 2, mean residual;
- `shifts`: per-layer shifts (normal equation or sum of shifts);
- `meta`: one meta-gradient, economic (Alg. 2) or concatenated;
- `training`, `checkpoint`, `method`: the meta-training loop, safetensors checkpoints, the Method.
"""
from editbench.methods.hypernet.config import HypernetConfig
from editbench.methods.hypernet.meta import EditorSetup, MetaBatch, meta_gradient
from editbench.methods.hypernet.method import HypernetMethod
from editbench.methods.hypernet.network import Editor

__all__ = ["Editor", "EditorSetup", "HypernetConfig", "HypernetMethod", "MetaBatch", "meta_gradient"]
