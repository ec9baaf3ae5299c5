"""The blocks and FFN linears of any decoder-only transformer, found from its module tree.

A causal LM from the hub stores its decoder blocks in one `nn.ModuleList` (`model.layers`,
`transformer.h`, `gpt_neox.layers`, ...). Within a block the FFN is found by name where the family
is known (`tasks/common/layers.py`: GPT-2 `mlp.c_fc`/`mlp.c_proj`, GPT-J `mlp.fc_in`/`mlp.fc_out`,
Llama `mlp.up_proj`+`mlp.gate_proj`/`mlp.down_proj`), else by shape: outside the attention, the
output linear maps the FFN width back to the hidden width (`[d, d_ff]`, d_ff > d) and the input
linears map the hidden width to the FFN width (`[d_ff, d]`). `Conv1D` (GPT-2) counts as a linear:
shapes are read as `[d_out, d_in]` (`editbench.modules.shape_of`).
"""
from __future__ import annotations

from torch import nn

from editbench.errors import EditbenchError
from editbench.modules import shape_of
from editbench.tasks.common.layers import ARCHITECTURES, Architecture, architecture_modules

ATTENTION_WORDS = ("attn", "attention")


def _blocks(model: nn.Module) -> tuple[str, int]:
    """(dotted name, length) of the longest outermost `nn.ModuleList` whose entries share one class
    (a list inside a block, such as a mixture of experts, is not a candidate)."""
    best: tuple[str, int] | None = None
    for name, module in model.named_modules():
        if any(part.isdigit() for part in name.split(".")):
            continue  # inside an entry of another ModuleList
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > best[1]:
                best = (name, len(module))
    if best is None:
        raise EditbenchError(f"cannot find the decoder blocks of {type(model).__name__} (expected an nn.ModuleList of "
                             "identical layers); give the modules to edit with --set layers=NAME,NAME")
    return best


def _linears(block: nn.Module) -> list[tuple[str, tuple[int, int]]]:
    """(name inside the block, [d_out, d_in]) of each 2-D weight module outside the attention."""
    found = []
    for name, module in block.named_modules():
        weight = getattr(module, "weight", None)
        if not name or not isinstance(weight, nn.Parameter) or weight.dim() != 2 or isinstance(module, nn.Embedding):
            continue
        if any(word in part.lower() for part in name.split(".") for word in ATTENTION_WORDS):
            continue
        found.append((name, shape_of(module)))
    return found


def find_architecture(model: nn.Module) -> tuple[Architecture, int]:
    """(module name templates, number of blocks) of a decoder-only `model`; one-line error if none."""
    prefix, count = _blocks(model)
    block = model.get_submodule(prefix)[count - 1]
    names = {name for name, _ in block.named_modules()}
    for known in ARCHITECTURES.values():
        if {*known.ffn_in, known.ffn_out} <= names and known.block.startswith(prefix + "."):
            return known, count
    linears = _linears(block)
    outs = [(name, shape) for name, shape in linears if shape[1] > shape[0]]  # d_ff -> d
    if not outs:
        raise EditbenchError(f"cannot find the FFN of {type(model).__name__}'s blocks ({prefix}.N): no linear outside "
                             "the attention maps a wider input to a narrower output; give --set layers=NAME,NAME")
    ffn_out, (hidden, width) = max(outs, key=lambda item: item[1][1])
    ffn_in = tuple(name for name, shape in linears if shape == (width, hidden))
    if not ffn_in:
        raise EditbenchError(f"cannot find the FFN input linear of {type(model).__name__}'s blocks ({prefix}.N, "
                             f"output {ffn_out} [{hidden}, {width}]); give --set layers=NAME,NAME")
    return Architecture(prefix + ".{i}", ffn_in, ffn_out), count


def structural_modules(found: tuple[Architecture, int], role: str) -> list[str]:
    """Module names for `role` (as `tasks/common/layers.py` chooses them) in a model `find_architecture`
    described; MEMIT edits GPT-J's blocks 3-8 of 28 (Meng et al. 2023) scaled to this model's depth."""
    architecture, blocks = found
    start, width = round(3 * blocks / 28), max(1, round(6 * blocks / 28))
    memit = tuple(range(min(start, blocks - 1), min(start + width, blocks)))
    return architecture_modules(architecture, blocks, role, memit_layers=memit)
