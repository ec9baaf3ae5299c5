"""Model resolution of the paper-tier tasks: local copies, env vars, cached hub ids offline."""
import pytest

from editbench.errors import EditbenchError
from editbench.tasks.common import hf
from editbench.tasks.zsre import ZsreGPT2
from tiny import char_tokenizer
from tiny_models_extra import tiny_gpt2_deep


def test_local_copy_by_config_and_by_env_var(tmp_path, monkeypatch):
    folder = tmp_path / "gpt2-copy"
    tiny_gpt2_deep(12).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    model = ZsreGPT2(ZsreGPT2.Config(model=str(folder))).load_model()
    assert len(model.transformer.h) == 12
    monkeypatch.setenv("EDITBENCH_GPT2", str(folder))
    task = ZsreGPT2()
    task.load_model()
    assert task.tokenizer.pad_token_id is not None and task.tokenizer.padding_side == "right"


def test_cached_hub_id_loads_local_only_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "_in_hub_cache", lambda repo: True)
    assert hf.resolve_model("gpt2", "EDITBENCH_GPT2") == ("gpt2", {"local_files_only": True})
    monkeypatch.setattr(hf, "_in_hub_cache", lambda repo: False)
    with pytest.raises(EditbenchError, match="EDITBENCH_GPT2=PATH"):
        hf.resolve_model("gpt2", "EDITBENCH_GPT2")
