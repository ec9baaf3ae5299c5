"""editbench.shared_start: running the opening tokens shared by a batch's rows once == the plain forward
(logits, gradients, captured keys, meta-gradients and edits), on tiny GPT-2, GPT-J and Llama in float64."""
import copy
import dataclasses

import pytest
import torch

from editbench.methods.hypernet import capture as capture_module
from editbench.methods.hypernet.capture import capture
from editbench.methods.hypernet.meta import EditorSetup, meta_gradient
from editbench.methods.hypernet.training import apply_editor, meta_batch
from editbench.prefix import PrefixCache
from editbench.shared_start import MIN_SHARED, can_share, run_rows, run_start, shared_length
from test_hypernet_meta import random_editor
from tiny import TinyCausalTask, tiny_causal
from tiny_models_extra import tiny_bert, tiny_t5

OPENING = "System: answer in one word. "  # 28 characters: a chat template's system turn, in miniature


@pytest.fixture(scope="module", params=["gpt2", "gptj", "llama"])
def task(request):
    return TinyCausalTask(request.param, model=tiny_causal(request.param, dtype=torch.float64))


def grad_tolerance(task):
    """Llama's RMSNorm computes in float32 even in a float64 model: its backward rounds the opening's
    gradient, summed over the rows when shared, row by row when not (differences ~1e-8 relative)."""
    return dict(rtol=1e-6, atol=1e-8) if task.arch == "llama" else dict(rtol=1e-9, atol=1e-12)


def opened(pairs):
    return [(OPENING + prompt, answer) for prompt, answer in pairs]


def train_pairs(task, count, seed):
    return opened([(r.prompt, r.target) for r in task.requests("train", count, seed=seed)])


def upper(task, blocks=(2, 3)):
    return [n for n in task.edit_modules("malmen") if any(f".{b}." in n for b in blocks)]


def tokens_seen(module):
    """Records the `[b, t]` of every input of `module` (a list filled while the hook is on)."""
    shapes = []
    return shapes, module.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape[:2])))


def test_shared_length():
    ids = torch.tensor([[5, 6, 7, 8, 9, 1, 0], [5, 6, 7, 8, 9, 2, 3], [5, 6, 7, 8, 4, 4, 4]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1] * 7, [1] * 7])
    assert shared_length({"input_ids": ids, "attention_mask": mask}) == 4
    assert shared_length({"input_ids": ids[:2], "attention_mask": mask[:2]}) == 5
    assert shared_length({"input_ids": ids[:2], "attention_mask": mask[:2]}, limit=4) == 4
    assert shared_length({"input_ids": ids[:2], "attention_mask": mask[:2]}, limit=MIN_SHARED - 1) == 0
    assert shared_length({"input_ids": ids[:1], "attention_mask": mask[:1]}) == 0  # one row: nothing to share
    same = ids[1:2].repeat(2, 1)
    assert shared_length({"input_ids": same, "attention_mask": torch.ones_like(same)}) == 6  # one token left each
    padded = torch.tensor([[5, 6, 7, 8, 9, 0], [5, 6, 7, 8, 9, 9]])
    assert shared_length({"input_ids": padded, "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])}) == 0


def test_only_causal_decoders_share():
    assert all(can_share(tiny_causal(arch)) for arch in ("gpt2", "gptj", "llama"))
    assert not can_share(tiny_bert(layers=2)) and not can_share(tiny_t5(layers=2))


@pytest.mark.parametrize("skip_lower", [False, True])
def test_logits_and_gradients_equal_the_plain_forward(task, skip_lower):
    names = upper(task)
    batch = task.batch(train_pairs(task, 4, seed=1))
    weight = task.model.get_submodule(names[0]).weight

    def run():
        weight.grad = None
        logits = task.logits(task.model, batch)  # every position, the opening's included
        (logits[batch.labels != -100].logsumexp(-1).sum() + task.nll(task.model, batch, "sum")).backward()
        return logits.detach(), weight.grad.clone()

    expected_logits, expected_grad = run()
    cache = PrefixCache(task.model, names, skip_lower=skip_lower)
    shapes, handle = tokens_seen(task.model.get_submodule(names[0]))
    try:
        with cache.feed(batch) as shared:
            got_logits, got_grad = run()
    finally:
        handle.remove()
        weight.grad = None
    assert shared >= len(OPENING) - 1  # the character tokenizer: the opening and maybe more
    width = batch.inputs["input_ids"].shape[1]
    assert shapes == [(1, shared)] + [(4, width - shared)] * 2  # the opening once, then each row's own tokens (2 passes)
    mask = batch.inputs["attention_mask"][:, :-1].bool()  # logits of padding positions are never read
    torch.testing.assert_close(got_logits[mask], expected_logits[mask], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, expected_grad, **grad_tolerance(task))
    assert not cache.shares or len(cache.starts) == int(skip_lower)


def test_capture_equals_the_plain_one(task):
    names = upper(task, (1, 2, 3))
    pairs = train_pairs(task, 5, seed=3)
    expected = capture(task, task.model, names, pairs, True, 3, PrefixCache(task.model, names, share_starts=False))
    shapes, handle = tokens_seen(task.model.get_submodule(names[-1]))
    try:
        for cache in (PrefixCache(task.model, names), PrefixCache(task.model, names, skip_lower=False)):
            got = capture(task, task.model, names, pairs, True, 3, cache)
            for name in names:
                for a, b in zip(got[name], expected[name]):
                    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    finally:
        handle.remove()
    assert min(t for _, t in shapes) < max(t for _, t in shapes) - len(OPENING) // 2  # the rows ran without their opening


def test_every_token_capture_does_not_share(task):
    names = upper(task)
    pairs = train_pairs(task, 4, seed=5)
    expected = capture(task, task.model, names, pairs, False, 4, PrefixCache(task.model, names, share_starts=False))
    shapes, handle = tokens_seen(task.model.get_submodule(names[-1]))
    try:
        got = capture(task, task.model, names, pairs, False, 4, PrefixCache(task.model, names))
    finally:
        handle.remove()
    assert shapes == [(4, task.batch(pairs).inputs["input_ids"].shape[1])]  # keys at the opening: no sharing
    for name in names:
        for a, b in zip(got[name], expected[name]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["economic", "concatenated"])
def test_meta_gradient_equals_the_plain_one(task, mode):
    names = upper(task)
    setup = EditorSetup(names=names, solve_dtype=torch.float64, lm_batch_size=3)
    editor = random_editor(task.model, names)
    requests = task.requests("train", 6, seed=7)
    step = meta_batch(requests, 7)
    step.edits, step.equivalents, step.unrelated = opened(step.edits), opened(step.equivalents), opened(step.unrelated)

    def grads(cache):
        copied = copy.deepcopy(editor)
        stats = meta_gradient(copied, task, task.model, step, setup, mode, cache)
        return {n: p.grad.clone() for n, p in copied.named_parameters() if p.grad is not None}, stats

    expected, expected_stats = grads(PrefixCache(task.model, names, share_starts=False))
    shared = PrefixCache(task.model, names)
    for _ in range(2):  # filling the cache, then on it (openings and pre-edit log-probs reused)
        got, stats = grads(shared)
        assert stats["meta_loss"] == pytest.approx(expected_stats["meta_loss"], rel=1e-10)
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], **grad_tolerance(task), msg=name)
    assert len(shared.starts) >= 1 and any(float(g.abs().max()) > 0 for g in expected.values())


def test_edit_gives_the_same_deltas(task):
    names = upper(task)
    setup = EditorSetup(names=names, solve_dtype=torch.float64, lm_batch_size=4)
    editor = random_editor(task.model, names)
    requests = [dataclasses.replace(r, prompt=OPENING + r.prompt) for r in task.requests("eval", 7, seed=0)]
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    expected, _ = apply_editor(editor, task, task.model, requests, setup,
                               PrefixCache(task.model, names, skip_lower=False, share_starts=False))
    task.model.load_state_dict(before)
    shapes, handle = tokens_seen(task.model.get_submodule(names[0]))
    try:
        got, _ = apply_editor(editor, task, task.model, requests, setup)  # default: the opening run once
    finally:
        handle.remove()
        task.model.load_state_dict(before)
    assert (1, len(OPENING)) in shapes or any(b == 1 for b, _ in shapes)
    for name in names:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=1e-12)
        assert float(expected[name].abs().max()) > 0


def test_a_reused_opening_follows_the_weights(task, monkeypatch):
    """Without graph the opening's run is reused across batches until a parameter changes in place
    (the padded passes, which batches that do not pack take)."""
    monkeypatch.setattr(capture_module, "_packs", lambda *args: False)
    names = upper(task)
    pairs = train_pairs(task, 6, seed=9)
    cache = PrefixCache(task.model, names, skip_lower=False)
    weight = task.model.get_submodule(names[0]).weight
    original = weight.detach().clone()
    runs, handle = tokens_seen(task.model.get_submodule(names[0]))
    try:
        capture(task, task.model, names, pairs, True, 2, cache)  # three batches, one run of the shared opening
        assert sum(b == 1 for b, _ in runs) == 1 and len(runs) == 1 + 2 * 3  # each batch: its rows' own openings, the rest
        with torch.no_grad():
            weight.add_(0.1 * torch.randn_like(weight))
        got = capture(task, task.model, names, pairs, True, 2, cache)
        assert sum(b == 1 for b, _ in runs) == 2  # run again for the changed weights
        expected = capture(task, task.model, names, pairs, True, 2, PrefixCache(task.model, names, share_starts=False))
    finally:
        handle.remove()
        with torch.no_grad():
            weight.copy_(original)
    for name in names:
        for a, b in zip(got[name], expected[name]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_rows_own_openings_run_without_graph_and_change_no_capture(task, monkeypatch):
    """Raw prompts share no opening: each row's tokens before the batch's first key run as one batch
    without graph (`own_openings`), and keys and value gradients equal the plain pass's (the padded
    passes, which batches that do not pack take)."""
    monkeypatch.setattr(capture_module, "_packs", lambda *args: False)
    names = upper(task, (1, 2, 3))
    pairs = [(r.prompt, r.target) for r in task.requests("train", 5, seed=4)]
    plain = PrefixCache(task.model, names, skip_lower=False, share_starts=False)
    expected = capture(task, task.model, names, pairs, True, 5, plain)
    shapes, handle = tokens_seen(task.model.get_submodule(names[-1]))
    try:
        got = capture(task, task.model, names, pairs, True, 5, PrefixCache(task.model, names, skip_lower=False))
    finally:
        handle.remove()
    batch = task.batch(pairs)
    width, first = batch.inputs["input_ids"].shape[1], int((batch.labels != -100).any(0).nonzero()[0])
    # Before the first key: a shared opening (if the prompts have one) once, then the rows' own tokens as one
    # batch; then the positions from the first key on.
    assert shapes[-1] == (5, width - first) and sum(t for _, t in shapes[:-1]) == first
    assert shapes[-2][0] == 5 and shapes[-2][1] >= MIN_SHARED
    for name in names:
        for a, b in zip(got[name], expected[name]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
            assert float(a.abs().max()) > 0


def test_run_rows_after_a_start_equals_one_run(task):
    """A shared start followed by each row's own tokens holds the keys, values and head inputs of
    running each whole row from position 0."""
    ids = torch.tensor([[7, 8, 9, 10, 11, 3, 4, 5], [7, 8, 9, 10, 11, 6, 2, 1]])
    with torch.no_grad():
        whole = run_rows(task.model, ids)
        split = run_rows(task.model, ids[:, 5:], run_start(task.model, ids[:1, :5]))
    assert split.length == whole.length == 8 and split.final.shape == whole.final.shape == (2, 8, whole.final.shape[-1])
    torch.testing.assert_close(split.final, whole.final, rtol=1e-9, atol=1e-12)
    for (k1, v1), (k2, v2) in zip(split.layers, whole.layers):
        torch.testing.assert_close(k1, k2, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-12)
