"""Model fingerprints depend on the weights, never on the folder the model was loaded from."""
import torch
from transformers import AutoModelForCausalLM

from editbench.provenance import architecture_config, model_fingerprint
from tiny import tiny_causal


def test_same_weights_in_two_folders_give_one_fingerprint(tmp_path):
    tiny_causal("llama").save_pretrained(tmp_path / "cache-a" / "model")
    tiny_causal("llama").save_pretrained(tmp_path / "home-b" / "elsewhere")
    first = AutoModelForCausalLM.from_pretrained(tmp_path / "cache-a" / "model")
    second = AutoModelForCausalLM.from_pretrained(tmp_path / "home-b" / "elsewhere")
    assert first.config._name_or_path != second.config._name_or_path  # the path differs ...
    assert model_fingerprint(first) == model_fingerprint(second)  # ... the fingerprint does not
    assert not any("path" in key for key in architecture_config(first))


def test_a_changed_weight_changes_the_fingerprint():
    model = tiny_causal("llama")
    before = model_fingerprint(model)
    weight = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight.view(-1)[-1] += 1e-3  # the last value: outside the strided sample of a large tensor
    assert model_fingerprint(model) != before
    assert model_fingerprint(model, sample=1) != before


def test_a_single_value_outside_the_sample_changes_the_fingerprint():
    layer = torch.nn.Linear(100, 100)  # 10,000 values: a 16-value sample reads every 625th
    before = model_fingerprint(layer, sample=16)
    with torch.no_grad():
        layer.weight.view(-1)[1] += 1e-6
    assert model_fingerprint(layer, sample=16) != before


def test_a_fingerprint_of_named_tensors_ignores_and_never_reads_the_others():
    model = tiny_causal("llama")
    kept = [name for name in model.state_dict() if name.startswith("model.layers.0.")]
    before = model_fingerprint(model, names=kept)
    assert before != model_fingerprint(model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(1.0)
    assert model_fingerprint(model, names=kept) == before
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.view(-1)[-1] += 1e-3
    assert model_fingerprint(model, names=kept) != before


def test_architecture_config_changes_the_fingerprint():
    model = tiny_causal("llama")
    before = model_fingerprint(model)
    model.config.rms_norm_eps = model.config.rms_norm_eps * 10
    assert model_fingerprint(model) != before


def test_a_run_output_does_not_make_the_checkout_dirty_but_a_code_change_does(tmp_path):
    import subprocess

    from editbench.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for path in ("results/runs.jsonl", "leaderboards/t.md", "editbench/code.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results/runs.jsonl").write_text("a\nb\n")  # a sweep appending its records
    (tmp_path / "leaderboards/t.md").write_text("b\n")
    assert git_commit(tmp_path) == clean
    (tmp_path / "editbench/code.py").write_text("b\n")
    assert git_commit(tmp_path) == clean + "-dirty"
