"""MEMIT end to end on tiny models (z optimisation, edits on GPT-2/GPT-J/Llama, errors), the real
embedded task (slow) and a benchmark of the edit time as m grows."""
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from tiny import TinyCausalTask

from editbench.api import EditRequest
from editbench.errors import EditbenchError
from editbench.methods.memit import Memit, MemitConfig
from editbench.methods.memit.locate import block_of, contexts, hidden_of, tokenise, with_hidden
from editbench.methods.memit.targets import optimise_targets
from editbench.modules import get_module, snapshot

FINAL_NORM = {"gpt2": "transformer.ln_f", "gptj": "transformer.ln_f", "llama": "model.norm"}

# Settings for tiny random models. MEMIT's hyper-parameters are scale-dependent: GPT-J's hidden
# states have norms of ~10², a tiny random model's ~10⁻¹, so the published ‖δ‖/‖z0‖² penalty and
# clamp would pin δ near 0, and λ = 15000 (for keys of dimension 16384) would swamp 4 requests.
TINY = dict(prefixes=MemitConfig().prefixes[:1], steps=8, weight_decay=0.0, clamp_norm_factor=4.0,
            update_weight=1.0, stats_samples=20)


def facts():
    """Requests whose prompt ends with the subject (a random model barely attends across tokens)."""
    pairs = [("Anna", "rome"), ("Bobby", "paris"), ("Carlos", "oslo"), ("Dee", "lima")]
    return [EditRequest(id=f"f{i}", prompt=f"Tell me about {s}", target=t, subject=s) for i, (s, t) in enumerate(pairs)]


def sharp_task(arch):
    """A tiny task whose model has confident outputs: the final norm's gain is raised 20-fold."""
    task = TinyCausalTask(arch)
    model = task.load_model()
    with torch.no_grad():
        get_module(model, FINAL_NORM[arch]).weight.mul_(20.0)
    return task, model


def target_nll(task, model, requests):
    with torch.no_grad():
        return float(task.nll(model, task.batch([(r.prompt, r.target) for r in requests])))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"Paragraph {i}: the {i}th town has {i * 7} houses and a river." for i in range(30)))
    return str(path)


def test_block_of_module_names():
    assert block_of("transformer.h.8.mlp.c_proj") == "transformer.h.8"
    assert block_of("model.layers.12.mlp.down_proj") == "model.layers.12"
    with pytest.raises(EditbenchError, match="block"):
        block_of("lm_head")


def test_target_optimisation_raises_target_probability():
    task, model = sharp_task("llama")
    requests = facts()[:3]
    block = block_of(task.edit_modules("memit")[-1])
    config = MemitConfig(**TINY)
    z, z0, stats = optimise_targets(task, model, requests, block, config)
    assert z.shape == z0.shape == (3, 32)
    assert ((z - z0).norm(dim=1) <= config.clamp_norm_factor * z0.norm(dim=1) * (1 + 1e-5)).all()
    # Independently: put z at the subject's last token of the bare prompt and score the target.
    prompts = tokenise(task, [(i, r.prompt, r.target, r.subject) for i, r in enumerate(requests)])

    def place(module, args, output):
        hidden = hidden_of(output).clone()
        hidden[torch.arange(len(requests)), prompts.position] = z
        return with_hidden(output, hidden)

    with torch.no_grad():
        before = float(task.nll(model, prompts.batch))
    handle = get_module(model, block).register_forward_hook(place)
    with torch.no_grad():
        after = float(task.nll(model, prompts.batch))
    handle.remove()
    assert after < before - 0.5, (before, after)
    assert stats["z_nll_after"] < stats["z_nll_before"]
    assert torch.isclose(torch.tensor(stats["z_nll_before"]), torch.tensor(before), rtol=0.3)


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
def test_edit_changes_targeted_outputs(arch, corpus, tmp_path):
    task, model = sharp_task(arch)
    requests = facts()
    names = task.edit_modules("memit")
    method = Memit(MemitConfig(**TINY, stats_corpus=corpus, stats_dir=str(tmp_path)))
    method.prepare(task, model, tmp_path)
    before_weights = snapshot(model, names)
    before = target_nll(task, model, requests)
    result = method.edit(task, model, requests)
    after = target_nll(task, model, requests)
    assert list(result.deltas) == names
    for name in names:
        weight = snapshot(model, [name])[name]
        assert result.deltas[name].shape == weight.shape  # [d_out, d_in], also for GPT-2's Conv1D
        torch.testing.assert_close(weight - before_weights[name], result.deltas[name], rtol=1e-4, atol=1e-6)
        assert float(result.deltas[name].norm()) > 0
    assert after < before - 0.5, (before, after)
    assert result.stats["residual_norm_after"] < result.stats["residual_norm_before"]


def test_edit_without_prepare_computes_statistics(corpus, tmp_path):
    task, model = sharp_task("gpt2")
    method = Memit(MemitConfig(**{**TINY, "steps": 2}, stats_corpus=corpus, stats_dir=str(tmp_path)))
    method.edit(task, model, facts()[:1])
    assert list(tmp_path.rglob("*.safetensors"))


def test_requests_without_subject_are_refused():
    task = TinyCausalTask("gpt2")
    model = task.load_model()
    requests = [replace(r, subject=None) for r in task.requests("eval", 2, 0)]
    with pytest.raises(EditbenchError, match="MEMIT needs the subject of each request"):
        Memit().edit(task, model, requests)


def test_subject_not_in_prompt_is_refused(corpus, tmp_path):
    task = TinyCausalTask("gpt2")
    model = task.load_model()
    request = EditRequest(id="x", prompt="Where does Anna live?", target="rome", subject="Bob")
    with pytest.raises(EditbenchError, match="does not occur in prompt"):
        Memit(MemitConfig(**TINY, stats_corpus=corpus, stats_dir=str(tmp_path))).edit(task, model, [request])


def test_encoder_decoder_models_are_refused():
    task = TinyCausalTask("gpt2")
    model = nn.Linear(2, 2)
    model.config = SimpleNamespace(is_encoder_decoder=True)
    with pytest.raises(EditbenchError, match="decoder-only"):
        Memit().edit(task, model, task.requests("eval", 1, 0))


@pytest.mark.parametrize("sets, message", [
    ({"kl_prompt": "is a"}, "exactly once"),
    ({"kl_prompt": "{}"}, "continue after the subject"),
    ({"stats_dtype": "float8"}, "stats_dtype"),
    ({"steps": 0}, "bad steps=0 for method memit: expected a finite number >= 1"),
    ({"z_memory_mb": -1.0}, "z_memory_mb=-1.0"),
])
def test_bad_configs_fail_early(sets, message):
    with pytest.raises(EditbenchError, match=message):
        Memit(MemitConfig(**sets))


# -- the non-finite guard -------------------------------------------------------------------------
def test_a_non_finite_z_loss_stops_at_its_step(corpus, tmp_path, monkeypatch):
    from editbench.errors import NonFiniteError
    from editbench.methods.memit.targets import ZProblem

    task, model = sharp_task("gpt2")
    method = Memit(MemitConfig(**{**TINY, "z_memory_mb": 0.0}, stats_corpus=corpus, stats_dir=str(tmp_path)))
    method.prepare(task, model, tmp_path)
    real = ZProblem.losses

    def nan_from_step_1(self, delta, rows=None):
        terms = real(self, delta, rows)
        nan_from_step_1.calls += 1
        if nan_from_step_1.calls > 1:
            terms.loss = terms.loss * float("nan")
        return terms
    nan_from_step_1.calls = 0
    monkeypatch.setattr(ZProblem, "losses", nan_from_step_1)
    before = snapshot(model, task.edit_modules("memit"))
    block = block_of(task.edit_modules("memit")[-1])
    with pytest.raises(NonFiniteError, match=rf"non-finite z loss \(.*\) in memit targets, layer {block}, step 1: lower lr"):
        method.edit(task, model, facts()[:2])
    after = snapshot(model, task.edit_modules("memit"))
    assert all(torch.equal(before[n], after[n]) for n in before)  # no weight was touched


def test_a_non_finite_solve_stops_before_its_layer_is_changed(corpus, tmp_path, monkeypatch):
    from editbench.errors import NonFiniteError
    from editbench.methods.memit import method as method_module

    task, model = sharp_task("gpt2")
    names = task.edit_modules("memit")
    method = Memit(MemitConfig(**{**TINY, "steps": 2}, stats_corpus=corpus, stats_dir=str(tmp_path)))
    method.prepare(task, model, tmp_path)
    real = method_module.memit_update
    monkeypatch.setattr(method_module, "memit_update",
                        lambda *args: real(*args) * float("inf"))
    before = snapshot(model, names)
    with pytest.raises(NonFiniteError, match=rf"non-finite solved delta \(.*\) in memit update, layer {names[0]}"):
        method.edit(task, model, facts()[:2])
    assert torch.equal(snapshot(model, names)[names[0]], before[names[0]])


def test_contexts_put_the_bare_prompt_first():
    request = EditRequest(id="x", prompt="Where does Anna live?", target="rome", subject="Anna")
    # The reference's template "{prefix}. {prompt}".
    assert contexts(request, ("A", "B b")) == ["Where does Anna live?", "A. Where does Anna live?", "B b. Where does Anna live?"]


@pytest.mark.slow
def test_memit_on_zsre_smollm2(tmp_path):
    """Statistics (default corpus and sample count) + m = 64 edits on the embedded task."""
    import resource

    from editbench.metrics import aggregate
    from editbench.tasks.zsre import ZsreSmolLM2

    task = ZsreSmolLM2()
    model = task.load_model()
    _, preset = ZsreSmolLM2.preset_for(Memit)  # the SmolLM2 setting (tasks/common/presets.py)
    method = Memit(MemitConfig(**preset))
    start = time.perf_counter()
    info = method.prepare(task, model, tmp_path)
    prepare_seconds = time.perf_counter() - start
    requests = task.requests("eval", 64, 0)
    pre = task.evaluate(model, requests)
    start = time.perf_counter()
    result = method.edit(task, model, requests)
    edit_seconds = time.perf_counter() - start
    post = aggregate(task.evaluate(model, requests), pre)
    before = aggregate(pre)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\nmemit zsre-smollm2 m=64: prepare {prepare_seconds:.0f} s ({info.get('stats', 'cached')}), "
          f"edit {edit_seconds:.0f} s, peak RSS {peak:.2f} GiB; ES {before['es']:.3f} -> {post['es']:.3f}, "
          f"GS {before['gs']:.3f} -> {post['gs']:.3f}, retention {post['retention']:.3f}; {result.stats}")
    assert post["es"] > before["es"] + 0.4  # m = 16 with the preset: 0.22 -> 0.75 (chat format)
    assert post["retention"] > 0.85  # m = 16: 0.94


@pytest.mark.benchmark(group="memit-edit")
@pytest.mark.parametrize("m", [2, 8, 32])
def test_benchmark_edit_time(benchmark, m, corpus, tmp_path):
    from editbench.measure import Phase
    from editbench.modules import apply_deltas

    task, model = sharp_task("gpt2")
    method = Memit(MemitConfig(**TINY, stats_corpus=corpus, stats_dir=str(tmp_path)))
    method.prepare(task, model, tmp_path)
    requests = (task.requests("eval", 32, 0) + task.requests("train", 32, 0))[:m]
    results = []

    def edit():
        with Phase("cpu") as phase:
            results.append(method.edit(task, model, requests))
        apply_deltas(model, results[-1].deltas, -1.0)
        return phase

    phase = benchmark.pedantic(edit, rounds=2, iterations=1)
    benchmark.extra_info.update(m=m, peak_rss_bytes=phase.peak_rss_bytes, z_seconds=results[-1].stats["z_seconds"])
