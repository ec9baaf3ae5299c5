"""Packed LM passes (`editbench.packing`) and the key capture that runs on them, against an
independent computation: each row alone through the whole model, its NLL differentiated by autograd,
on tiny GPT-2, GPT-J and Llama in float64."""
import math

import pytest
import torch

from editbench.methods.hypernet import capture as capture_module
from editbench.methods.hypernet.capture import capture
from editbench.packing import Packing, attention_mask, bins_by_length, right_padded
from editbench.prefix import PrefixCache
from editbench.shared_start import shared_length
from test_prefix_shared import OPENING, grad_tolerance, opened, tokens_seen, upper
from tiny import TinyCausalTask, tiny_causal


@pytest.fixture(scope="module", params=["gpt2", "gptj", "llama"])
def task(request):
    return TinyCausalTask(request.param, model=tiny_causal(request.param, dtype=torch.float64))


def per_row_reference(task, names, pairs, answer_only):
    """name -> (keys, value grads): each pair alone, the whole model, -sum log p(answer) by autograd."""
    keys = {n: [] for n in names}
    grads = {n: [] for n in names}
    for pair in pairs:
        batch = task.batch([pair])
        seen = {}
        handles = [task.model.get_submodule(n).register_forward_hook(
            lambda m, args, out, n=n: seen.__setitem__(n, (args[0], out))) for n in names]
        weights = [task.model.get_submodule(n).weight for n in names]
        flags = [w.requires_grad for w in weights]
        for w in weights:
            w.requires_grad_(True)
        try:
            logits = task.model(**batch.inputs).logits[:, :-1]  # [1, T-1, V]: position t predicts token t+1
            answer = batch.labels != -100
            loss = -torch.log_softmax(logits[answer], -1).gather(-1, batch.labels[answer][:, None]).sum()
            value_grads = torch.autograd.grad(loss, [seen[n][1] for n in names])
        finally:
            for h in handles:
                h.remove()
            for w, flag in zip(weights, flags):
                w.requires_grad_(flag)
        for n, value_grad in zip(names, value_grads):
            mask = task.key_mask(batch, n, answer_only)
            keys[n].append(seen[n][0].detach()[mask])
            grads[n].append(value_grad[mask])
    return {n: (torch.cat(keys[n]), torch.cat(grads[n])) for n in names}


def test_bins_hold_every_row_once_and_balance_the_tokens():
    spans = {r: (3 + (7 * r) % 11, 1 + (5 * r) % 4) for r in range(40)}  # (opening, rest) lengths
    bins = bins_by_length(spans, target=64)
    total = sum(map(sum, spans.values()))
    assert len(bins) == math.ceil(total / 64)
    assert sorted(r for b in bins for r in b) == list(range(40))
    assert all(b == sorted(b) for b in bins)
    loads = [sum(sum(spans[r]) for r in b) for b in bins]
    assert max(loads) - min(loads) <= max(map(sum, spans.values()))
    assert bins_by_length({}) == []


def test_packing_lays_out_spans_and_masks_each_row_causally():
    spans = {0: (2, 5), 1: (0, 4), 3: (1, 2)}  # row 2 has nothing to run
    packing = Packing.of(spans, [[0, 3], [1]], torch.device("cpu"), extra=1)
    assert packing.row.tolist() == [[0, 0, 0, 3, -1], [1, 1, 1, 1, -1]]
    assert packing.position.tolist() == [[2, 3, 4, 1, 0], [0, 1, 2, 3, 0]]
    values = torch.arange(4 * 6).view(4, 6)
    assert packing.take(values, -7).tolist() == [[2, 3, 4, 19, -7], [6, 7, 8, 9, -7]]
    opening = Packing.of({0: (0, 2), 1: (0, 0), 3: (0, 1)}, [[0, 3], [1]], torch.device("cpu"))
    mask = attention_mask(packing, [opening, packing], shared=2, dtype=torch.float64)[:, 0]  # [B, q, 2 + kv]
    keys_row = torch.cat([opening.row, packing.row], 1)
    keys_position = torch.cat([opening.position, packing.position], 1)
    for b in range(2):
        for q in range(packing.row.shape[1]):
            for k in range(mask.shape[-1]):
                if k < 2:
                    allowed = True  # the shared start
                elif packing.row[b, q] < 0:
                    allowed = True  # a padding query: never read
                else:
                    allowed = bool(keys_row[b, k - 2] == packing.row[b, q]
                                   and keys_position[b, k - 2] <= packing.position[b, q])
                assert (mask[b, q, k] == 0) == allowed, (b, q, k)
    assert float(mask.min()) == torch.finfo(torch.float64).min


def test_right_padded():
    ids = torch.ones(2, 4, dtype=torch.long)
    assert right_padded({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])})
    assert not right_padded({"input_ids": ids, "attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])})
    assert not right_padded({"input_ids": ids, "attention_mask": torch.ones(2, 4), "token_type_ids": ids})


@pytest.mark.parametrize("answer_only", [True, False])
@pytest.mark.parametrize("with_opening", [True, False])
def test_packed_capture_equals_each_row_alone(task, answer_only, with_opening):
    """Keys and value gradients of the packed passes (the edit's default: a cache that keeps no
    states) equal those of every row run alone through the whole model, in the order of `pairs`."""
    names = upper(task, (1, 2, 3))
    pairs = [(r.prompt, r.target) for r in task.requests("train", 7, seed=11)]
    pairs[2:2] = [("Where does the one with a much longer name live?", "abcdefgh"), ("Who?", "x")]  # uneven rows
    pairs = opened(pairs) if with_opening else pairs
    prefix = PrefixCache(task.model, names, skip_lower=False)
    assert capture_module._packs(task.model, task.batch(pairs), prefix)
    got = capture(task, task.model, names, pairs, answer_only, 4, prefix)  # two groups
    expected = per_row_reference(task, names, pairs, answer_only)
    for name in names:
        assert got[name][0].shape[0] == expected[name][0].shape[0] > len(pairs)
        torch.testing.assert_close(got[name][0], expected[name][0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got[name][1], expected[name][1], **grad_tolerance(task))
        assert float(got[name][1].abs().max()) > 0


def test_packed_passes_run_no_padding_and_no_unread_token(task):
    """Answer-only capture runs each row's tokens up to its last answer output once (the last token,
    whose output no loss reads, never): the shared opening once, then every row's own tokens, with
    at most one padding column per bin and pass (plus the bins' extra column for `logits[:, :-1]`)."""
    names = upper(task)
    pairs = opened([(r.prompt, r.target) for r in task.requests("train", 9, seed=2)])
    batch = task.batch(pairs)
    shapes, handle = tokens_seen(task.model.get_submodule(names[0]))
    try:
        capture(task, task.model, names, pairs, True, 9, PrefixCache(task.model, names, skip_lower=False))
    finally:
        handle.remove()
    lengths = batch.inputs["attention_mask"].sum(-1).tolist()
    first_answer = int((batch.labels != -100).any(0).nonzero()[0])  # no row's answer output comes earlier
    shared = shared_length(batch.inputs, first_answer)
    assert shared >= len(OPENING) and shapes[0] == (1, shared)  # the shared start, once
    assert len(shapes) == 3 and shapes[1][0] == shapes[2][0]  # then the bins: the openings, the rest
    bins = shapes[1][0]
    run = bins * (shapes[1][1] + shapes[2][1])
    needed = sum(n - 1 - shared for n in lengths)  # every row's tokens after the start but its last
    assert needed + bins <= run <= needed + bins * (1 + max(lengths) - shared)


def test_cached_lower_blocks_and_left_padding_do_not_pack(task):
    names = upper(task)
    pairs = [(r.prompt, r.target) for r in task.requests("train", 3, seed=1)]
    batch = task.batch(pairs)
    assert not capture_module._packs(task.model, batch, PrefixCache(task.model, names))  # meta-training's states
    assert capture_module._packs(task.model, batch, None)
    mask = batch.inputs["attention_mask"].clone()
    mask[0, 0] = 0  # a hole at the start of a row: not right padding
    assert not capture_module._packs(task.model, type(batch)(dict(batch.inputs, attention_mask=mask), batch.labels), None)
