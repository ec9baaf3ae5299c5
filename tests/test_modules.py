"""Weight shifts are taken back bit-exactly in every dtype (`editbench.modules`)."""
import pytest
import torch

from editbench.errors import EditbenchError
from editbench.modules import add_to_weight, apply_deltas, get_module, restore, snapshot, weight_of
from tiny import tiny_causal

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
NAMES = {"gpt2": [f"transformer.h.{i}.mlp.c_proj" for i in (2, 3)] + ["transformer.h.3.mlp.c_fc"],
         "llama": [f"model.layers.{i}.mlp.down_proj" for i in (2, 3)] + ["model.layers.3.mlp.up_proj"]}


def bits(t):
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def same_bits(a, b):
    return a.dtype == b.dtype and torch.equal(bits(a.contiguous()), bits(b.contiguous()))


def random_deltas(model, names, dtype, seed=1):
    """Shifts as large as the weights, in the weight's dtype (as MALMEN returns them)."""
    generator = torch.Generator().manual_seed(seed)
    deltas = {}
    for name in names:
        w = weight_of(get_module(model, name))
        deltas[name] = (torch.randn(w.shape, generator=generator, dtype=torch.float64) * float(w.detach().float().std())).to(dtype)
    return deltas


@pytest.mark.parametrize("arch", ["gpt2", "llama"])  # gpt2: Conv1D stores [d_in, d_out]
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_revert_restores_every_bit(arch, dtype):
    model = tiny_causal(arch).to(dtype)
    names = NAMES[arch]
    with torch.no_grad():  # a signed zero: fl(-0.0 + 0.0) - 0.0 is +0.0
        weight_of(get_module(model, names[0]))[0, 0] = -0.0
    before = snapshot(model, names)
    deltas = random_deltas(model, names, dtype)
    deltas[names[0]][0, 0] = 0.0
    # Plain arithmetic is not exact here: the test would pass for no reason otherwise.
    naive = {n: (before[n] + deltas[n]) - deltas[n] for n in names}
    assert not all(same_bits(naive[n], before[n]) for n in names)

    apply_deltas(model, deltas)
    after = snapshot(model, names)
    assert all(same_bits(after[n], before[n] + deltas[n]) for n in names)  # the add itself is unchanged
    apply_deltas(model, deltas, sign=-1)
    for name in names:
        assert same_bits(weight_of(get_module(model, name)), before[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_revert_of_a_cast_shift_is_exact(dtype):
    # MEMIT's way: solve in float64, add that, return `.float()` of it, revert with the float32 copy.
    model = tiny_causal("llama").to(dtype)
    names = NAMES["llama"]
    before = snapshot(model, names)
    solved = random_deltas(model, names, torch.float64)
    for name in names:
        add_to_weight(get_module(model, name), solved[name])
    apply_deltas(model, {n: d.float() for n, d in solved.items()}, sign=-1.0)
    assert all(same_bits(weight_of(get_module(model, n)), before[n]) for n in names)


def test_stacked_adds_are_taken_back_in_reverse_order():
    model = tiny_causal("gpt2").to(torch.bfloat16)
    names = NAMES["gpt2"]
    first, second = random_deltas(model, names, torch.bfloat16, 1), random_deltas(model, names, torch.bfloat16, 2)
    original = snapshot(model, names)
    apply_deltas(model, first)
    middle = snapshot(model, names)
    apply_deltas(model, second)
    apply_deltas(model, second, sign=-1)
    assert all(same_bits(weight_of(get_module(model, n)), middle[n]) for n in names)
    apply_deltas(model, first, sign=-1)
    assert all(same_bits(weight_of(get_module(model, n)), original[n]) for n in names)


def test_a_weight_changed_since_the_add_is_subtracted_not_overwritten():
    model = tiny_causal("llama").to(torch.bfloat16)
    name = NAMES["llama"][0]
    module = get_module(model, name)
    delta = random_deltas(model, [name], torch.bfloat16)[name]
    add_to_weight(module, delta)
    with torch.no_grad():
        weight_of(module).mul_(2)  # someone else's change: the remembered original no longer applies
    changed = weight_of(module).clone()
    add_to_weight(module, delta, sign=-1)
    assert same_bits(weight_of(module), changed - delta)


def test_a_different_shift_is_subtracted_not_treated_as_the_revert():
    model = tiny_causal("llama")
    name = NAMES["llama"][0]
    module = get_module(model, name)
    delta = random_deltas(model, [name], torch.float32)[name]
    add_to_weight(module, delta)
    edited = weight_of(module).clone()
    add_to_weight(module, 0.5 * delta, sign=-1)
    assert same_bits(weight_of(module), edited - 0.5 * delta)


def test_restore_copies_a_snapshot_back_and_forgets_the_adds():
    model = tiny_causal("gpt2").to(torch.float16)
    names = NAMES["gpt2"]
    before = snapshot(model, names)
    apply_deltas(model, random_deltas(model, names, torch.float16))
    restore(model, before)
    assert all(same_bits(weight_of(get_module(model, n)), before[n]) for n in names)
    assert all(not getattr(get_module(model, n), "_editbench_undo", []) for n in names)


def test_shift_of_the_wrong_shape_is_one_line_error():
    model = tiny_causal("llama")
    module = get_module(model, NAMES["llama"][0])
    with pytest.raises(EditbenchError, match=r"shift of shape \(3, 3\)"):
        add_to_weight(module, torch.zeros(3, 3))


def test_no_undo_keeps_nothing_and_reverts_by_subtraction():
    from editbench.modules import no_undo

    model = tiny_causal("llama").to(torch.bfloat16)
    name = NAMES["llama"][0]
    module = get_module(model, name)
    delta = random_deltas(model, [name], torch.bfloat16)[name]
    with no_undo():
        assert add_to_weight(module, delta) is None
    assert not getattr(module, "_editbench_undo", [])
    edited = weight_of(module).clone()
    add_to_weight(module, delta, sign=-1)
    assert same_bits(weight_of(module), edited - delta)
