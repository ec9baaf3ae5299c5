"""MEMIT's z objective and keys against an independent computation, on a tiny random Llama.

The independent side follows the reference code (kmeng01/memit `compute_z`, `compute_ks`): one
forward pass per context (no padding, no batching), the KL term as `F.kl_div(log p0, log p_delta,
log_target=True, reduction="batchmean")` (ROME Eq. 4: KL(p_delta || p0)), the penalty
`||delta|| / ||z0||^2`, keys averaged within each kind of context and then across kinds.
"""
import pytest
import torch
from torch import nn
from tiny import TinyCausalTask

from editbench.api import EditRequest
from editbench.methods.memit import Memit, MemitConfig
from editbench.methods.memit.locate import block_of, hidden_of, with_hidden
from editbench.methods.memit.targets import optimise_targets
from editbench.modules import get_module

PREFIXES = ("The sky was grey", "Because of it", "You know this well")
SETTINGS = dict(prefixes=PREFIXES, steps=2, lr=0.5, weight_decay=0.5, kl_factor=0.0625, clamp_norm_factor=0.75,
                stop_loss=0.0, z_batch_size=4)


def sharp_task():
    """A tiny Llama whose outputs are confident (final norm gain x20), so that the KL term is not tiny."""
    task = TinyCausalTask("llama")
    model = task.load_model()
    with torch.no_grad():
        model.model.norm.weight.mul_(20.0)
    return task, model


def request(i=0):
    subject, target = [("Anna", "rome"), ("Bobby", "paris")][i]
    return EditRequest(id=f"r{i}", prompt=f"Tell me about {subject}", target=target, subject=subject)


def run_one(task, model, prompt, answer, subject, block, delta=None, inputs_of=None):
    """One unbatched forward of `prompt` + answer; `delta` added at block's output at the subject's last token.

    Returns (log-probs [T-1, V], labels [T-1], subject index, block output at subject [d], module input at subject).
    """
    batch = task.batch([(prompt, answer)])
    index = task.subject_token_index(prompt, subject)
    seen = {}

    def add(module, args, output):
        hidden = hidden_of(output)
        seen["block"] = hidden[0, index].detach().clone()
        if delta is None:
            return output
        hidden = hidden.clone()
        hidden[0, index] = hidden[0, index] + delta
        return with_hidden(output, hidden)

    handles = [get_module(model, block).register_forward_hook(add)]
    if inputs_of:
        handles.append(get_module(model, inputs_of).register_forward_pre_hook(
            lambda m, a: seen.__setitem__("key", a[0][0, index].detach().clone())))
    with torch.no_grad():
        log_probs = task.logits(model, batch)[0].float().log_softmax(-1)
    for h in handles:
        h.remove()
    return log_probs, batch.labels[0], index, seen["block"], seen.get("key")


def reference_loss(task, model, req, block, delta, config):
    """Eq. 16 for one request at `delta`, computed as the reference does; returns (loss, nll, kl, decay, z0)."""
    contexts = [req.prompt] + [f"{p}. {req.prompt}" for p in config.prefixes]
    nlls = []
    for context in contexts:
        log_probs, labels, *_ = run_one(task, model, context, req.target, req.subject, block, delta)
        answer = labels != -100
        nlls.append(-log_probs[answer].gather(1, labels[answer][:, None]).mean())
    nll = torch.stack(nlls).mean()
    essence = f"{req.subject} is a"  # the distribution of the token after the subject
    init, _, index, _, _ = run_one(task, model, essence, "x", req.subject, block)
    new, *_ = run_one(task, model, essence, "x", req.subject, block, delta)
    kl = nn.functional.kl_div(init[index][None], new[index][None], log_target=True, reduction="batchmean")
    z0 = run_one(task, model, req.prompt, req.target, req.subject, block)[3]
    decay = config.weight_decay * delta.norm() / z0.norm() ** 2
    return nll + config.kl_factor * kl, nll, kl, decay, z0


def test_z_loss_and_clamp_equal_the_reference_computation():
    """After one Adam step (steps = 2), the reported loss is Eq. 16 at the clamped delta."""
    task, model = sharp_task()
    block = block_of(task.edit_modules("memit")[-1])
    config = MemitConfig(**SETTINGS)
    req = request()
    z, z0, stats = optimise_targets(task, model, [req], block, config)
    delta = (z - z0)[0]
    loss, nll, kl, decay, ref_z0 = reference_loss(task, model, req, block, delta, config)
    torch.testing.assert_close(z0[0], ref_z0, rtol=1e-5, atol=1e-6)
    # lr 0.5 moves each of the 32 coordinates by ~0.5 at the first Adam step: far past 0.75 ||z0||.
    assert float(delta.norm()) == pytest.approx(0.75 * float(ref_z0.norm()), rel=1e-5)
    # The test must tell the KL directions apart: KL(p0 || p_delta) gives another loss.
    init, _, index, _, _ = run_one(task, model, f"{req.subject} is a", "x", req.subject, block)
    new, *_ = run_one(task, model, f"{req.subject} is a", "x", req.subject, block, delta)
    other_kl = (init[index].exp() * (init[index] - new[index])).sum()
    assert abs(float(other_kl - kl)) * config.kl_factor > 1e-3, (float(kl), float(other_kl))
    assert stats["z_loss_after"] == pytest.approx(float(loss + decay), rel=1e-4)
    assert stats["z_nll_after"] == pytest.approx(float(nll), rel=1e-4)


def test_z_loss_terms_of_the_batched_problem_equal_the_reference():
    """`ZProblem.losses` on two requests at once, at arbitrary deltas, term by term."""
    from editbench.methods.memit.targets import ZProblem

    task, model = sharp_task()
    block = block_of(task.edit_modules("memit")[-1])
    config = MemitConfig(**SETTINGS)
    requests = [request(0), request(1)]
    problem = ZProblem(task, model, requests, block, config)
    delta = torch.randn(problem.z0.shape, generator=torch.Generator().manual_seed(3)) * 0.2 * problem.z0.norm(dim=1, keepdim=True)
    with torch.no_grad():
        terms = problem.losses(delta)
    for i, req in enumerate(requests):
        loss, nll, kl, decay, z0 = reference_loss(task, model, req, block, delta[i], config)
        torch.testing.assert_close(problem.z0[i], z0, rtol=1e-5, atol=1e-6)
        assert float(terms.nll[i]) == pytest.approx(float(nll), rel=1e-4)
        assert float(terms.kl[i]) == pytest.approx(float(kl), rel=1e-3, abs=1e-6)
        assert float(terms.decay[i]) == pytest.approx(float(decay), rel=1e-5)
        assert float(terms.loss[i]) == pytest.approx(float(loss + decay), rel=1e-4)
    # Rows of request 1 only: request 0 contributes nothing.
    rows = torch.nonzero(problem.prompts.owner == 1).squeeze(1)
    with torch.no_grad():
        alone = problem.losses(delta, rows)
    assert float(alone.loss[0]) == 0.0 and float(alone.loss[1]) == pytest.approx(float(terms.loss[1]), rel=1e-5)


def test_first_layer_update_uses_the_two_level_key_average(tmp_path):
    """Layer 1's shift equals R Kᵀ (λC + K Kᵀ)⁻¹ with K = ½ k(bare) + ½ mean k(prefixed), computed here."""
    task, model = sharp_task()
    names = task.edit_modules("memit")
    block = block_of(names[-1])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Paragraph {i}: the {i}th town has {i * 7} houses." for i in range(20)))
    config = MemitConfig(**SETTINGS, update_weight=2.0, stats_corpus=str(corpus), stats_dir=str(tmp_path))
    requests = [request(0), request(1)]
    z, _, _ = optimise_targets(task, model, requests, block, config)  # deterministic: the edit finds the same z
    keys, residuals = [], []
    for i, req in enumerate(requests):
        found = [run_one(task, model, context, req.target, req.subject, block, inputs_of=names[0])
                 for context in [req.prompt] + [f"{p}. {req.prompt}" for p in PREFIXES]]
        prefixed = torch.stack([f[4] for f in found[1:]]).mean(0)
        keys.append(0.5 * found[0][4] + 0.5 * prefixed)
        residuals.append((z[i] - found[0][3]) / len(names))  # spread over the layers left
    K, R = torch.stack(keys).double().T, torch.stack(residuals).double().T  # [d_in, m], [d_out, m]
    method = Memit(config)
    method.prepare(task, model, tmp_path)
    C = method._covariances[names[0]].double()
    expected = R @ torch.linalg.solve(config.update_weight * C + K @ K.T, K).T  # [d_out, d_in]
    result = method.edit(task, model, requests)
    torch.testing.assert_close(result.deltas[names[0]].double(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("stop_loss, unconverged", [(1e-9, 2), (1e9, 0)])
def test_unconverged_targets_are_counted_and_warned(stop_loss, unconverged, tmp_path, capsys):
    task, model = sharp_task()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Paragraph {i}: the {i}th town." for i in range(10)))
    config = MemitConfig(**{**SETTINGS, "steps": 1, "stop_loss": stop_loss}, stats_corpus=str(corpus), stats_dir=str(tmp_path))
    result = Memit(config).edit(task, model, [request(0), request(1)])
    assert result.stats["z_unconverged"] == unconverged
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("editbench: warning: memit:")]
    if unconverged:
        assert len(warned) == 1 and "2 of 2 requests" in warned[0] and "stop_loss" in warned[0], err
    else:
        assert warned == [], err


def test_group_by_budget():
    from editbench.methods.memit.budget import group_by_budget

    rows, widths = [3, 3, 3, 3, 3], [10, 10, 20, 10, 10]
    # 1 byte per token, budget 60: [0, 1] = 60 tokens; [2] alone (2 x 3 x 20 = 120 > 60); then [3, 4].
    assert group_by_budget(rows, widths, 1.0, 60, cap=16) == [range(0, 2), range(2, 3), range(3, 5)]
    assert group_by_budget(rows, widths, 1.0, 1e9, cap=2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert group_by_budget(rows, widths, 1.0, 1, cap=16) == [range(i, i + 1) for i in range(5)]  # each alone


def test_autograd_bytes_counts_saved_activations_not_parameters():
    from editbench.methods.memit.budget import autograd_bytes

    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.randn(5, 8, requires_grad=True)
    _, saved = autograd_bytes(model, lambda: model(x).sum())
    # Linear 1 saves its input x [5, 8]; tanh its output [5, 16]; linear 2 its input (the same [5, 16]).
    assert saved == 4 * (5 * 8 + 5 * 16)


def test_memory_budget_splits_the_z_batch_without_changing_z():
    task, model = sharp_task()
    block = block_of(task.edit_modules("memit")[-1])
    requests = [request(0), request(1), request(0)]
    together = MemitConfig(**{**SETTINGS, "steps": 3, "z_memory_mb": 0})
    z, _, stats = optimise_targets(task, model, requests, block, together)
    assert stats["z_batches"] == 1
    alone = MemitConfig(**{**SETTINGS, "steps": 3, "z_memory_mb": 1e-6})  # below one request: one per batch
    z_alone, _, stats_alone = optimise_targets(task, model, requests, block, alone)
    assert stats_alone["z_batches"] == 3 and stats_alone["z_bytes_per_token"] > 0
    torch.testing.assert_close(z_alone, z, rtol=1e-4, atol=1e-5)


OPENING = "System: answer in one word. "  # every row opens with it, as with a chat template's system turn


class OpeningTask(TinyCausalTask):
    """Prompts formatted behind a fixed opening, so that the z batch's rows share their first tokens."""

    def batch(self, pairs):
        return super().batch([(OPENING + prompt, answer) for prompt, answer in pairs])

    def subject_token_index(self, prompt, subject):
        return super().subject_token_index(OPENING + prompt, subject)


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
@pytest.mark.parametrize("opening", [False, True])
def test_fast_z_pass_equals_the_plain_forward_in_loss_and_gradient(arch, opening):
    """The z pass that skips the blocks up to L (cached states), runs a shared opening once and applies
    the head at the read positions only gives the plain pass's loss terms and gradient in δ (float64)."""
    from editbench.methods.memit.targets import ZProblem

    task = (OpeningTask if opening else TinyCausalTask)(arch)
    model = task.load_model(dtype=torch.float64)
    block = block_of(task.edit_modules("memit")[-1])
    config = MemitConfig(**SETTINGS)
    requests = [request(0), request(1)]
    fast = ZProblem(task, model, requests, block, config)
    plain = ZProblem(task, model, requests, block, config, skip_lower=False)
    assert fast.following is not None and fast.cache.applies and not plain.cache.applies
    shared = []
    fast.cache.feed = _recording(fast.cache.feed, shared)
    gen = torch.Generator().manual_seed(5)
    delta = (torch.randn(fast.z0.shape, generator=gen, dtype=torch.float64) * 0.3 * fast.z0.norm(dim=1, keepdim=True))
    results = []
    for problem in (fast, plain):
        d = delta.clone().requires_grad_(True)
        terms = problem.losses(d)
        terms.loss.sum().backward()
        results.append((terms, d.grad))
    (a, grad_a), (b, grad_b) = results
    for name in ("loss", "nll", "kl", "decay"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-8, atol=1e-12)
    assert float(grad_a.abs().sum()) > 0
    assert (max(shared) >= len(OPENING) - 1) if opening else (max(shared) == 0)


def _recording(feed, lengths):
    """Wraps `PrefixCache.feed` to record the opening length P of every pass."""
    import contextlib

    @contextlib.contextmanager
    def wrapped(*args, **kwargs):
        with feed(*args, **kwargs) as length:
            lengths.append(length)
            yield length
    return wrapped


def test_fast_z_pass_runs_no_block_below_the_z_layer_and_the_head_at_read_positions_only():
    from editbench.methods.memit.targets import ZProblem

    task = OpeningTask("llama")
    model = task.load_model()
    names = task.edit_modules("memit")
    block = block_of(names[-1])
    problem = ZProblem(task, model, [request(0), request(1)], block, MemitConfig(**SETTINGS))
    with torch.no_grad():
        problem.losses(torch.zeros_like(problem.z0))  # the first pass keeps the states entering block L+1
    calls, head_rows = [], []
    blocks = model.model.layers
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: calls.append(i)) for i, b in enumerate(blocks)]
    handles.append(model.get_output_embeddings().register_forward_hook(lambda m, a, o: head_rows.append(o.shape)))
    try:
        with torch.no_grad():
            problem.losses(torch.zeros_like(problem.z0))
    finally:
        for h in handles:
            h.remove()
    top = int(block.rsplit(".", 1)[1])
    assert calls == [top + 1]  # blocks 0..L never ran; the opening's run is reused while no weight changes
    read = int((problem.prompts.batch.labels != -100).sum()) + 2  # answer tokens + one per essence row
    assert head_rows[-1] == (read, model.config.vocab_size)


def test_update_reads_the_keys_above_the_unchanging_lower_blocks_once(tmp_path, monkeypatch):
    """The per-layer key passes of the update skip the blocks below the first edited one after one pass."""
    from editbench.methods.memit import method as memit_method

    task, model = sharp_task()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Paragraph {i}: the {i}th town." for i in range(10)))
    config = MemitConfig(**SETTINGS, stats_corpus=str(corpus), stats_dir=str(tmp_path))
    requests = [request(0), request(1)]
    method = Memit(config)
    method.prepare(task, model, tmp_path)
    z, z0, stats = optimise_targets(task, model, requests, block_of(task.edit_modules("memit")[-1]), config)
    monkeypatch.setattr(memit_method, "optimise_targets", lambda *args: (z, z0, dict(stats)))
    first = int(task.edit_modules("memit")[0].split(".")[2])
    calls = []
    handle = model.model.layers[first - 1].register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        method.edit(task, model, requests)
    finally:
        handle.remove()
    assert len(calls) == 1  # one pass of the 8 rows fills the cache; the 2 + 1 key and output passes reuse it


def test_z_loss_at_the_last_block_equals_the_reference():
    """With L the last block there is no block L+1 to start from: δ goes in by a hook on L's output."""
    from editbench.methods.memit.targets import ZProblem

    task, model = sharp_task()
    block = f"model.layers.{len(model.model.layers) - 1}"
    config = MemitConfig(**SETTINGS)
    requests = [request(0), request(1)]
    problem = ZProblem(task, model, requests, block, config)
    assert problem.following is None and not problem.cache.applies
    delta = torch.randn(problem.z0.shape, generator=torch.Generator().manual_seed(4)) * 0.2 * problem.z0.norm(dim=1, keepdim=True)
    with torch.no_grad():
        terms = problem.losses(delta)
    for i, req in enumerate(requests):
        loss, nll, kl, decay, _ = reference_loss(task, model, req, block, delta[i], config)
        assert float(terms.loss[i]) == pytest.approx(float(loss + decay), rel=1e-4)
