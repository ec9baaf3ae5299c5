"""Per-task method presets, the `layers` setting every method has, and settings that follow the run."""
import pytest
from click.testing import CliRunner

from editbench.api import Task
from editbench.cli import main
from editbench.config import build_config
from editbench.errors import EditbenchError
from editbench.layers import select_modules
from editbench.methods.ft import FineTune
from editbench.methods.malmen import Malmen, MalmenCacheAll
from editbench.methods.memit import Memit
from editbench.methods.mend import Mend, MendMitchell
from editbench.tasks.zsre import ZsreGPT2, ZsreSmolLM2
from tiny import TinyCausalTask, tiny_causal


def test_presets_resolve_through_the_method_hierarchy():
    name, preset = ZsreSmolLM2.preset_for(MalmenCacheAll)  # an ablation inherits its method's entry
    assert name == "zsre-smollm2/malmen" and preset == ZsreSmolLM2.method_presets["malmen"]
    assert ZsreSmolLM2.preset_for(MendMitchell)[0] == "zsre-smollm2/mend"
    assert ZsreSmolLM2.preset_for(Memit)[1]["update_weight"] < Memit.Config().update_weight  # scaled to 1536-wide keys
    assert ZsreSmolLM2.preset_for(FineTune) == (None, {})
    assert ZsreGPT2.preset_for(Malmen) == (None, {})  # paper tasks: the paper's settings are the defaults
    for method in (Malmen, Mend, Memit):  # presets pass the configs' range checks
        build_config(method.Config, ZsreSmolLM2.preset_for(method)[1], owner=method.name)


def test_layers_by_block_index_or_module_name():
    model = tiny_causal("gpt2")
    default = ["transformer.h.2.mlp.c_proj", "transformer.h.3.mlp.c_proj"]
    assert select_modules(default, "", model) == default
    assert select_modules(default, "0, 1", model) == ["transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_proj"]
    both = ["transformer.h.3.mlp.c_fc", "transformer.h.3.mlp.c_proj"]
    assert select_modules(both, "1", model) == ["transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"]
    assert select_modules(default, "transformer.h.0.mlp.c_fc", model) == ["transformer.h.0.mlp.c_fc"]
    for bad, message in [("7", "no module 'transformer.h.7.mlp.c_proj'"), ("1,transformer.h.0.mlp.c_fc", "mixes"),
                         ("1,1", "twice"), ("transformer.h.0.mlp", "no weight")]:
        with pytest.raises(EditbenchError, match=message):
            select_modules(default, bad, model)


@pytest.mark.parametrize("method", [FineTune(FineTune.Config(layers="1")), Memit(Memit.Config(layers="1")),
                                    Malmen(Malmen.Config(layers="1"))])
def test_every_method_edits_the_layers_it_is_given(method):
    task = TinyCausalTask("llama")
    model = task.load_model()
    names = method.modules(task, model)
    assert names and all(".layers.1." in n for n in names)
    assert names != task.edit_modules(method.role)


def test_trained_editors_follow_the_run_seed_and_m():
    assert Malmen.follows_run == {"seed": "seed", "train_edits": "edits"} and Mend.follows_run == Malmen.follows_run
    assert FineTune.follows_run == {"seed": "seed"} and Memit.follows_run == {}
    assert issubclass(ZsreSmolLM2, Task)


def test_list_method_shows_every_option_with_help_default_and_preset():
    result = CliRunner().invoke(main, ["list", "memit", "--task", "zsre-smollm2"])
    assert result.exit_code == 0, result.output
    assert "preset on zsre-smollm2: zsre-smollm2/memit" in result.output
    for field in Memit.Config.__dataclass_fields__.values():
        assert f"  {field.name} = " in result.output and field.metadata.get("help", "")[:30] in result.output
    assert "(preset; default 15000.0)" in result.output
