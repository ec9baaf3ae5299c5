"""The README's Python example (the ```python block of its "Python API" section) runs verbatim:
on a tiny Llama checkpoint folder standing in for the embedded model (`$EDITBENCH_SMOLLM2`, which
the SmolLM2 tasks load instead of the cached SmolLM2), and, marked slow, on the real model."""
import re
from pathlib import Path

import pytest
from datadir import data_dir

import editbench
from editbench.provenance import model_fingerprint
from editbench.tasks.common.layers import modules_for
from tiny import LAYERS, char_tokenizer, tiny_causal

ROOT = Path(__file__).resolve().parents[1]
# A chat template in the tiny tokenizer's alphabet: the SmolLM2 tasks show facts as a chat turn.
CHAT_TEMPLATE = ("{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 0 < len(code.strip().splitlines()) <= 10
    return code


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDITBENCH_DATA", str(data_dir()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_example() -> dict:
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    return namespace


def check_outcome(namespace: dict, folder: Path) -> None:
    out, target = namespace["out"], namespace["target"]
    assert out.reverted and (folder / "deltas.safetensors").is_file()
    saved = editbench.load_edit(folder)
    assert model_fingerprint(target.model) == saved.info["edited_fingerprint"]  # the last line applied it again
    assert saved.info["method"] == "ft" and saved.info["task"] == "zsre-smollm2"
    assert set(out.scores[0]) >= {"pre", "post", "predicted"} and 0.0 <= out.scores[0]["post"]["es"] <= 1.0


def test_readme_example_runs_verbatim_on_a_tiny_checkpoint(workdir, monkeypatch):
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tiny_causal("llama").save_pretrained(workdir / "tiny-llama")
    tokenizer.save_pretrained(workdir / "tiny-llama")
    monkeypatch.setenv("EDITBENCH_SMOLLM2", str(workdir / "tiny-llama"))
    namespace = run_example()
    check_outcome(namespace, workdir / "sweden-edit")
    assert namespace["target"].model.config.hidden_size == 32  # it ran on the tiny model, not SmolLM2
    # a replaced model's edited modules come from its own structure (4 blocks, not SmolLM2's 30)
    assert sorted(namespace["out"].deltas) == sorted(modules_for("llama", LAYERS, "ft"))


@pytest.mark.slow
def test_readme_example_runs_verbatim_on_the_embedded_model(workdir, monkeypatch):
    monkeypatch.delenv("EDITBENCH_SMOLLM2", raising=False)
    namespace = run_example()
    check_outcome(namespace, workdir / "sweden-edit")
    assert namespace["out"].scores[0]["post"]["es"] == 1.0  # 10 epochs of FT learn one fact
