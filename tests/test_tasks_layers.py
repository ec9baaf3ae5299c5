"""Every registered task's edit modules exist in a random twin of its model (same depth) and are linear."""
import pytest

from editbench.errors import EditbenchError
from editbench.modules import get_module, shape_of
from editbench.tasks.common.classifier import FirstTokenClassifier
from editbench.tasks.counterfact import CounterfactGPTJ, CounterfactSmolLM2
from editbench.tasks.fever import FeverBert, FeverMiniLM
from editbench.tasks.zsre import ZsreGPT2, ZsreGPTJ, ZsreSmolLM2, ZsreT5XL
from tiny_models_extra import tiny_bert, tiny_gpt2_deep, tiny_gptj_deep, tiny_llama_deep, tiny_t5

TWINS = {
    "zsre-smollm2": (ZsreSmolLM2, lambda: tiny_llama_deep(30)),
    "counterfact-smollm2": (CounterfactSmolLM2, lambda: tiny_llama_deep(30)),
    "zsre-gpt2": (ZsreGPT2, lambda: tiny_gpt2_deep(12)),
    "zsre-gptj": (ZsreGPTJ, lambda: tiny_gptj_deep(28)),
    "counterfact-gptj": (CounterfactGPTJ, lambda: tiny_gptj_deep(28)),
    "zsre-t5xl": (ZsreT5XL, lambda: tiny_t5(24)),
    "fever-bert": (FeverBert, lambda: FirstTokenClassifier(tiny_bert(12), 2)),
    "fever-minilm": (FeverMiniLM, lambda: FirstTokenClassifier(tiny_bert(6), 2)),
}
REFUSED = {("zsre-t5xl", "memit"), ("fever-bert", "memit"), ("fever-minilm", "memit")}
_models = {}


def twin(name):
    if name not in _models:
        _models[name] = TWINS[name][1]()
    return _models[name]


@pytest.mark.parametrize("name", sorted(TWINS))
@pytest.mark.parametrize("role", ["ft", "malmen", "malmen-first-fc", "mend", "memit"])
def test_modules_exist_and_are_linear(name, role):
    task_class, _ = TWINS[name]
    task = task_class()
    assert task.name == name and task.description and "\n" not in task.description
    if (name, role) in REFUSED:
        with pytest.raises(EditbenchError):
            task.edit_modules(role)
        return
    names = task.edit_modules(role)
    assert names and len(set(names)) == len(names)
    model = twin(name)
    for module_name in names:
        d_out, d_in = shape_of(get_module(model, module_name))
        assert d_out > 0 and d_in > 0


def test_malmen_layers_follow_the_paper():
    assert ZsreGPT2().edit_modules("malmen") == [f"transformer.h.{i}.mlp.c_proj" for i in range(6, 12)]
    assert ZsreGPTJ().edit_modules("malmen") == [f"transformer.h.{i}.mlp.fc_out" for i in range(22, 28)]
    assert ZsreT5XL().edit_modules("malmen") == (
        [f"encoder.block.{i}.layer.1.DenseReluDense.wo" for i in (21, 22, 23)]
        + [f"decoder.block.{i}.layer.2.DenseReluDense.wo" for i in (21, 22, 23)])
    assert FeverBert().edit_modules("malmen") == [f"bert.encoder.layer.{i}.output.dense" for i in range(6, 12)]
    assert FeverMiniLM().edit_modules("malmen") == [f"bert.encoder.layer.{i}.output.dense" for i in range(6)]


def test_ft_layers_follow_appendix_a5():
    assert ZsreGPTJ().edit_modules("ft") == ["transformer.h.21.mlp.fc_out"]
    assert CounterfactGPTJ().edit_modules("ft") == ["transformer.h.21.mlp.fc_out"]
    t5 = ZsreT5XL().edit_modules("ft")
    assert {n.split(".")[0] + "." + n.split(".")[2] for n in t5} == {"encoder.22", "encoder.23", "decoder.22", "decoder.23"}
    assert ZsreGPT2().edit_modules("ft") == [f"transformer.h.{i}.mlp.{p}" for i in (9, 10, 11) for p in ("c_fc", "c_proj")]


def test_memit_layers():
    assert ZsreGPTJ().edit_modules("memit") == [f"transformer.h.{i}.mlp.fc_out" for i in range(3, 9)]
    assert ZsreGPT2().edit_modules("memit") == [f"transformer.h.{i}.mlp.c_proj" for i in range(2, 6)]


def test_gpt2_conv1d_is_seen_transposed():
    model = twin("zsre-gpt2")
    module = get_module(model, "transformer.h.11.mlp.c_proj")
    assert tuple(module.weight.shape) == (64, 16)  # Conv1D stores [d_in, d_out]
    assert shape_of(module) == (16, 64)
