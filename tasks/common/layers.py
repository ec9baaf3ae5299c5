"""Which linear modules each method edits, per architecture (the paper, Appendix A.5 and NOTES).

`ffn_in` / `ffn_out` are the first and second linear layers of a block's FFN. A role maps to a
list of (block indices counted from the end or absolute, FFN parts):
- malmen: second FFN linear of the last 6 blocks (Sec. 5.1); malmen-first-fc: the first one.
- ft: the whole FFN of the last 3 blocks (Appendix A.5; Mitchell et al. 2022).
- mend: both FFN linears of the last 3 blocks (Mitchell et al. 2022).
- memit: second FFN linear of an early-middle window (GPT-J: blocks 3-8, Meng et al. 2023).

T5 (`t5_modules_for`) edits the encoder and the decoder alike: MALMEN the last 3 blocks of each
(Sec. 5.1), FT the FFN of the last 2 (Appendix A.5), MEND the FFN of the last 3; MEMIT is refused
(it locates facts in a decoder-only residual stream).
"""
from __future__ import annotations

from dataclasses import dataclass

from editbench.errors import EditbenchError


@dataclass(frozen=True)
class Architecture:
    """Module name templates of one model family (`{i}` is the block index)."""

    block: str
    ffn_in: tuple[str, ...]  # first linear(s) of the FFN; Llama has a gate and an up projection
    ffn_out: str


ARCHITECTURES = {
    "gpt2": Architecture("transformer.h.{i}", ("mlp.c_fc",), "mlp.c_proj"),
    "gptj": Architecture("transformer.h.{i}", ("mlp.fc_in",), "mlp.fc_out"),
    "llama": Architecture("model.layers.{i}", ("mlp.up_proj", "mlp.gate_proj"), "mlp.down_proj"),
    "bert": Architecture("bert.encoder.layer.{i}", ("intermediate.dense",), "output.dense"),
}


def modules_for(arch: str, num_layers: int, role: str, memit_layers: tuple[int, ...] | None = None) -> list[str]:
    """Module names for `role` in a model of family `arch` with `num_layers` blocks."""
    if arch not in ARCHITECTURES:
        raise EditbenchError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return architecture_modules(ARCHITECTURES[arch], num_layers, role, memit_layers)


def architecture_modules(a: Architecture, num_layers: int, role: str,
                         memit_layers: tuple[int, ...] | None = None) -> list[str]:
    """Module names for `role` in a model whose blocks and FFN linears `a` names (see `modules_for`)."""
    name = lambda i, part: f"{a.block.format(i=i)}.{part}"  # noqa: E731
    last = lambda k: range(max(0, num_layers - k), num_layers)  # noqa: E731
    if role == "malmen":
        return [name(i, a.ffn_out) for i in last(6)]
    if role == "malmen-first-fc":
        return [name(i, a.ffn_in[0]) for i in last(6)]
    if role == "ft":
        return [name(i, part) for i in last(3) for part in (*a.ffn_in, a.ffn_out)]
    if role == "mend":
        return [name(i, part) for i in last(3) for part in (a.ffn_in[0], a.ffn_out)]
    if role == "memit":
        layers = memit_layers if memit_layers is not None else tuple(range(3, 9))
        return [name(i, a.ffn_out) for i in layers]
    raise EditbenchError(f"unknown edit role {role!r}; expected one of malmen, malmen-first-fc, ft, mend, memit")


def gptj_modules_for(role: str) -> list[str]:
    """GPT-J 6B (28 blocks): FT tunes only `h.21.mlp.fc_out` (Appendix A.5, as Meng et al. 2022;
    2023); MEMIT blocks 3-8; the other roles as `modules_for`."""
    if role == "ft":
        return ["transformer.h.21.mlp.fc_out"]
    return modules_for("gptj", 28, role)


def t5_modules_for(num_layers: int, role: str, gated: bool = True) -> list[str]:
    """Module names for `role` in a T5 with `num_layers` blocks in each of encoder and decoder.

    gated: T5 v1.1 FFN (`wi_0`, `wi_1`, `wo`, e.g. t5-xl-ssm-nq) rather than T5 v1.0 (`wi`, `wo`).
    """
    ffn_in = ("DenseReluDense.wi_0", "DenseReluDense.wi_1") if gated else ("DenseReluDense.wi",)
    # The FFN is sub-layer 1 of an encoder block and sub-layer 2 of a decoder block (after cross-attention).
    stacks = (("encoder", 1), ("decoder", 2))
    name = lambda stack, sub, i, part: f"{stack}.block.{i}.layer.{sub}.{part}"  # noqa: E731
    last = lambda k: range(max(0, num_layers - k), num_layers)  # noqa: E731
    if role == "malmen":
        return [name(s, sub, i, "DenseReluDense.wo") for s, sub in stacks for i in last(3)]
    if role == "malmen-first-fc":
        return [name(s, sub, i, ffn_in[0]) for s, sub in stacks for i in last(3)]
    if role == "ft":
        return [name(s, sub, i, part) for s, sub in stacks for i in last(2) for part in (*ffn_in, "DenseReluDense.wo")]
    if role == "mend":
        return [name(s, sub, i, part) for s, sub in stacks for i in last(3) for part in (ffn_in[0], "DenseReluDense.wo")]
    if role == "memit":
        raise EditbenchError("MEMIT does not apply to T5 (encoder-decoder): it edits a decoder-only model's "
                             "early FFN layers at the subject's last token")
    raise EditbenchError(f"unknown edit role {role!r}; expected one of malmen, malmen-first-fc, ft, mend, memit")
