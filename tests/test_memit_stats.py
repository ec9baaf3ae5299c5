"""MEMIT's key statistics: accumulation, the one-pass hooks, the on-disk cache and the corpus."""
import json

import pytest
import torch
from datadir import data_root
from tiny import TinyCausalTask

from editbench.data import sha256_of
from editbench.errors import EditbenchError
from editbench.methods.memit import Memit, MemitConfig
from editbench.methods.memit import corpus as corpus_module
from editbench.methods.memit import stats as stats_module
from editbench.methods.memit.corpus import WIKITEXT2_VALID, load_texts, paragraphs
from editbench.methods.memit.stats import compute_covariances, second_moments, token_batches
from editbench.modules import get_module
from editbench.provenance import model_fingerprint

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Lobsters are blue in life.",
    "A short one.",
    "Mating occurs in the summer, producing eggs which are carried by the females for up to a year.",
    "It may grow to a length of 60 cm.",
]


def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(" \n = Heading = \n\n" + "\n \n".join(TEXTS) + "\n = = Sub = = \n")
    return path


def direct_covariance(model, tokenizer, name, texts):
    """Σ k kᵀ / n over every token of every text, one text at a time (no padding), in float64."""
    inputs = []
    handle = get_module(model, name).register_forward_pre_hook(lambda m, a: inputs.append(a[0][0].double()))
    with torch.no_grad():
        for text in texts:
            model(input_ids=torch.tensor([tokenizer(text)["input_ids"]]))
    handle.remove()
    keys = torch.cat(inputs)  # [n, d_in]
    return keys.T @ keys / len(keys)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_covariance_equals_direct_computation(arch):
    task = TinyCausalTask(arch)
    model = task.load_model()
    names = task.edit_modules("memit")
    # 60 tokens per batch: several padded batches of different widths.
    covariances, info = compute_covariances(model, task.tokenizer, names, TEXTS, 512, 60, torch.float32)
    assert info["tokens"] == sum(len(t) for t in TEXTS)  # character tokenizer, no special tokens
    for name in names:
        expected = direct_covariance(model, task.tokenizer, name, TEXTS)
        assert covariances[name].dtype == torch.float32
        torch.testing.assert_close(covariances[name].double(), expected, rtol=1e-4, atol=1e-7)


def test_one_pass_equals_per_layer_passes_and_stops_early():
    task = TinyCausalTask("gptj")
    model = task.load_model()
    names = task.edit_modules("memit")  # blocks 1 and 2 of 4
    batches = token_batches(task.tokenizer, TEXTS, 512, 80)
    calls = []
    handle = model.transformer.h[3].register_forward_hook(lambda *a: calls.append(1))
    together, count = second_moments(model, batches, names)
    handle.remove()
    assert calls == []  # the forward stopped inside block 2: block 3 never ran
    for name in names:
        alone, count_alone = second_moments(model, batches, [name])
        assert count_alone == count
        torch.testing.assert_close(together[name].dense(), alone[name].dense(), rtol=0, atol=0)


def test_statistics_are_cached_and_reused(tmp_path, monkeypatch):
    task = TinyCausalTask("llama")
    model = task.load_model()
    config = MemitConfig(stats_corpus=str(corpus_file(tmp_path)), stats_samples=4, stats_dir=str(tmp_path / "stats"))
    first = Memit(config).prepare(task, model, tmp_path / "unused")
    names = task.edit_modules("memit")
    assert first["stats_computed"] == names and first["stats"]["texts"] == 4
    provenance = json.loads((tmp_path / "stats").rglob(f"{names[0]}.json").__next__().read_text())
    assert provenance["samples"] == 4 and provenance["corpus"] == config.stats_corpus
    assert provenance["source"]["sha256"] == sha256_of(corpus_file(tmp_path)) and len(provenance["model"]) == 64

    def no_recompute(*args, **kwargs):
        raise AssertionError("statistics were recomputed")

    monkeypatch.setattr("editbench.methods.memit.method.compute_covariances", no_recompute)
    method = Memit(config)
    second = method.prepare(task, model, tmp_path / "unused")
    assert second["stats_computed"] == [] and second["stats_cache"] == first["stats_cache"]
    assert set(method._covariances) == set(names)
    # The one-off cost of a reuse is the pass that built the statistics (its provenance), never 0.
    assert not first["reused"] and second["reused"]
    assert second["one_off_seconds"] == first["one_off_seconds"] == first["stats"]["seconds"] is not None
    # Another sample count is another statistic.
    monkeypatch.setattr("editbench.methods.memit.method.compute_covariances", stats_module.compute_covariances)
    third = Memit(MemitConfig(**{**config.__dict__, "stats_samples": 3})).prepare(task, model, tmp_path / "unused")
    assert third["stats_computed"] == names and third["stats_cache"] != first["stats_cache"]


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
def test_statistics_key_reads_the_weights_below_the_last_edited_module_only(arch):
    task = TinyCausalTask(arch)
    model = task.load_model()
    names = task.edit_modules("memit")  # blocks 1 and 2 of 4
    read = stats_module.weights_read_before(model, task.tokenizer, names)
    blocks = "transformer.h" if arch != "llama" else "model.layers"
    assert any("wte" in key or "embed_tokens" in key for key in read)  # the embeddings feed every key
    assert any(key.startswith(f"{blocks}.2.") for key in read)  # the last edited block, below its module
    assert not any(key.startswith(f"{blocks}.3.") or "lm_head" in key or "ln_f" in key
                   or (key.endswith("norm.weight") and not key.startswith(blocks)) for key in read)
    # Independent check of the claim: the statistics do not move when a weight outside `read`
    # changes (block 3, the final norm, the head), and the key does not either; a weight in it moves both.
    before = compute_covariances(model, task.tokenizer, names, TEXTS, 512, 60, torch.float64)[0]
    key = model_fingerprint(model, names=read)
    state = model.state_dict(keep_vars=True)
    shared = {state[name].data_ptr() for name in read}  # a tied head is the embedding itself
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in read and tensor.data_ptr() not in shared:
                tensor.add_(0.5)
    after = compute_covariances(model, task.tokenizer, names, TEXTS, 512, 60, torch.float64)[0]
    for name in names:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert model_fingerprint(model, names=read) == key != model_fingerprint(model)
    with torch.no_grad():
        model.state_dict(keep_vars=True)[read[0]].view(-1)[-1] += 1e-3
    assert model_fingerprint(model, names=read) != key


def _garbage_tensor_bytes(path):
    """Random bytes in place of the tensor data, header and size kept: still a valid safetensors file."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = torch.randn((len(data) - header) // 4).numpy().tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "legacy sidecar"])
def test_a_damaged_statistic_is_recomputed_never_used(tmp_path, capsys, damage):
    task = TinyCausalTask("llama")
    model = task.load_model()
    names = task.edit_modules("memit")
    config = MemitConfig(stats_corpus=str(corpus_file(tmp_path)), stats_samples=4, stats_dir=str(tmp_path / "stats"))
    first = Memit(config)
    first.prepare(task, model, tmp_path)
    path = next((tmp_path / "stats").rglob(f"{names[0]}.safetensors"))
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    assert record["checksum"]["bytes"] == path.stat().st_size and record["module"] == names[0]
    if damage == "garbage":
        _garbage_tensor_bytes(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:  # written by an editbench without checksums
        sidecar.write_text(json.dumps({k: v for k, v in record.items() if k != "checksum"}))
    capsys.readouterr()
    again = Memit(config)
    info = again.prepare(task, model, tmp_path)
    assert info["stats_computed"] == [names[0]] and not info["reused"]
    if damage != "legacy sidecar":
        assert f"{path} are corrupt" in capsys.readouterr().err
    for name in names:
        torch.testing.assert_close(again._covariances[name], first._covariances[name], rtol=0, atol=0)
    assert Memit(config).prepare(task, model, tmp_path)["stats_computed"] == []  # sound again


def test_non_finite_statistics_stop_the_run_and_are_not_cached(tmp_path, monkeypatch):
    from editbench.errors import NonFiniteError

    task = TinyCausalTask("gpt2")
    model = task.load_model()
    names = task.edit_modules("memit")

    def overflowing(*args, **kwargs):
        covariances, info = stats_module.compute_covariances(*args, **kwargs)
        covariances[names[1]][0, 0] = float("inf")
        return covariances, info

    monkeypatch.setattr("editbench.methods.memit.method.compute_covariances", overflowing)
    config = MemitConfig(stats_corpus=str(corpus_file(tmp_path)), stats_samples=4, stats_dir=str(tmp_path / "stats"))
    with pytest.raises(NonFiniteError, match=rf"non-finite statistics \(1 of \d+ values NaN/Inf\) in memit statistics, "
                                             rf"layer {names[1]}: use stats_dtype"):
        Memit(config).prepare(task, model, tmp_path)
    assert not list((tmp_path / "stats").rglob(f"{names[1]}.*"))


def test_corpus_paragraphs_skip_headings_and_blank_lines(tmp_path):
    texts, source = load_texts(str(corpus_file(tmp_path)), 100, None)
    assert texts == TEXTS and source["texts"] == len(TEXTS)
    assert load_texts(str(corpus_file(tmp_path)), 2, None)[0] == TEXTS[:2]
    assert paragraphs([" = Title = ", "", " text "]) == ["text"]
    with pytest.raises(EditbenchError, match="not a file"):
        load_texts(str(tmp_path / "missing.txt"), 5, None)


@pytest.mark.skipif(not (data_root() and (data_root() / WIKITEXT2_VALID.path).is_file()),
                    reason="EDITBENCH_DATA is not set or holds no WikiText-2 (wikitext/)")
def test_default_corpus_is_wikitext2_from_the_data_folder():
    texts, source = load_texts("wikitext-2", 10_000, data_root())
    assert len(texts) == 1841 and source["sha256"] == WIKITEXT2_VALID.sha256


def test_datasets_corpus_names(monkeypatch):
    import datasets

    asked = []

    def fake_load(name, config, split, streaming):
        asked.append((name, config, split))
        return iter([{"text": " = T = \n first paragraph \n second paragraph "}, {"text": "third"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    texts, source = corpus_module.load_texts("wikitext-103", 2, None)
    assert texts == ["first paragraph", "second paragraph"] and asked[-1] == ("Salesforce/wikitext", "wikitext-103-raw-v1", "train")
    corpus_module.load_texts("someone/corpus:en", 3, None)
    assert asked[-1] == ("someone/corpus", "en", "train")


@pytest.mark.parametrize("dim", [150, 450, 1000])  # one panel; two; five of 200
def test_symmetric_sum_equals_dense_float64_sum(dim):
    torch.manual_seed(0)
    total = stats_module.SymmetricSum(dim)
    assert len(total.panels) == max(1, dim // stats_module.PANEL_WIDTH)
    batches = [torch.randn(n, dim) * 3 + 1 for n in (37, 64, 5)]
    for keys in batches:
        total.add(keys)
    keys = torch.cat(batches).double()
    expected = keys.T @ keys
    dense = total.dense(len(keys), torch.float32)
    split = total.bounds[1]
    assert dense.dtype == torch.float32 and torch.equal(dense[split:, :split], dense[:split, split:].T)  # mirrored
    # float32 products (each exact to ~1e-6 relative), float64 sums.
    torch.testing.assert_close(dense.double(), expected / len(keys), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(total.dense(), expected, rtol=1e-5, atol=1e-4)
    exact = stats_module.SymmetricSum(dim)
    exact.add(keys)  # float64 products
    torch.testing.assert_close(exact.dense(), expected, rtol=1e-12, atol=1e-9)
