"""MALMEN and its ablations end to end on tiny random models (prepare = short meta-training, edit)."""
import pytest
import torch

from editbench.api import EditResult
from editbench.errors import EditbenchError
from editbench.methods.malmen import Malmen, MalmenCacheAll, MalmenFirstFC, MalmenNoReg, MalmenSumShifts
from editbench.methods.mend import Mend
from editbench.modules import get_module, shape_of, snapshot, weight_of
from tiny import TinyCausalTask, tiny_causal

ALL = [Malmen, MalmenSumShifts, MalmenNoReg, MalmenCacheAll, MalmenFirstFC, Mend]


def tiny_config(cls, **overrides):
    fields = dict(rank=16, train_steps=2, train_edits=4, lm_batch_size=4, valid_every=2, valid_edits=4, init_lr=1e-3)
    fields.update(overrides)
    return cls.Config(**fields)


def test_names_and_descriptions_are_distinct():
    assert len({c.name for c in ALL}) == len(ALL)
    assert all(c.description and "\n" not in c.description for c in ALL)
    assert [c.name for c in ALL] == ["malmen", "malmen-sum-shifts", "malmen-no-reg", "malmen-cache-all",
                                     "malmen-first-fc", "mend"]


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
def test_malmen_prepares_and_edits(arch, tmp_path):
    task = TinyCausalTask(arch, model=tiny_causal(arch))
    model = task.model
    method = Malmen(tiny_config(Malmen))
    info = method.prepare(task, model, tmp_path)
    assert not info["reused"] and info["steps"] == 2
    names = task.edit_modules("malmen")
    before = snapshot(model, names)
    result = method.edit(task, model, task.requests("eval", 5, seed=0))
    assert isinstance(result, EditResult) and set(result.deltas) == set(names)
    for name in names:
        assert result.deltas[name].shape == shape_of(get_module(model, name))
        torch.testing.assert_close(weight_of(get_module(model, name)), before[name] + result.deltas[name])
    assert 0.0 <= result.stats["mean_residual"] < 1.0 and result.stats["cached_tokens"] > 0
    # a second prepare reuses the checkpoint
    again = Malmen(tiny_config(Malmen))
    assert again.prepare(task, model, tmp_path)["reused"]
    for (k, v), v2 in zip(method.editor.state_dict().items(), again.editor.state_dict().values()):
        assert torch.equal(v, v2), k


@pytest.mark.parametrize("cls", [MalmenSumShifts, MalmenCacheAll, MalmenFirstFC, Mend])
def test_ablations_edit_their_layers(cls, tmp_path):
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    method = cls(tiny_config(cls, train_steps=1, valid_every=1))
    method.prepare(task, task.model, tmp_path)
    result = method.edit(task, task.model, task.requests("eval", 3, seed=0))
    assert set(result.deltas) == set(task.edit_modules(cls.role))
    assert all(torch.isfinite(d).all() for d in result.deltas.values())


def test_concatenated_training_mode_trains_like_the_economic_one(tmp_path):
    """Both modes start from the same editor and take the same meta-gradient: the same trained editor."""
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2", dtype=torch.float64))
    states = {}
    for mode in ("concatenated", "economic"):
        method = Mend(tiny_config(Mend, training_mode=mode, train_steps=2, valid_every=2, meta_lr=1e-3, checkpoint=False))
        info = method.prepare(task, task.model, tmp_path / mode)
        assert info["steps"] == 2 and not info["reused"]
        states[mode] = method.editor.state_dict()
    start = Mend(tiny_config(Mend)).build_editor(task, task.model).double().state_dict()
    for name, value in states["economic"].items():
        torch.testing.assert_close(states["concatenated"][name], value, rtol=1e-5, atol=1e-9, msg=name)
    assert any(not torch.equal(value, start[name].to(value.dtype)) for name, value in states["economic"].items()
               if name.endswith("up"))


def test_no_reg_singular_keys_is_a_clear_error(tmp_path):
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    method = MalmenNoReg(tiny_config(MalmenNoReg, train_steps=1, valid_every=1))
    # a few answer tokens give U U^T of rank < d (128 for GPT-2's c_proj): the paper's failure
    with pytest.raises(EditbenchError, match="singular"):
        method.prepare(task, task.model, tmp_path)


def test_edit_before_prepare_and_bad_config_are_errors():
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    with pytest.raises(EditbenchError, match="prepare"):
        Malmen().edit(task, task.model, task.requests("eval", 1, seed=0))
    with pytest.raises(EditbenchError, match="training_mode"):
        Mend(Mend.Config(training_mode="naive"))


def test_bfloat16_model_edits(tmp_path):
    """GPT-J is edited in bf16 by the paper's code: keys are cached in float32 for the editor."""
    task = TinyCausalTask("gptj", model=tiny_causal("gptj", dtype=torch.bfloat16))
    method = Malmen(tiny_config(Malmen, train_steps=1, valid_every=1))
    method.prepare(task, task.model, tmp_path)
    result = method.edit(task, task.model, task.requests("eval", 3, seed=0))
    assert all(d.dtype == torch.bfloat16 and torch.isfinite(d.float()).all() for d in result.deltas.values())


class NoRephraseTask(TinyCausalTask):
    """Requests without equivalent prompts, as FEVER's claims: validation has no GS."""

    def requests(self, split, count, seed):
        import dataclasses

        return [dataclasses.replace(r, equivalents=()) for r in super().requests(split, count, seed)]


def test_training_selects_on_the_metrics_a_task_has(tmp_path):
    task = NoRephraseTask("gpt2", model=tiny_causal("gpt2"))
    from editbench.methods.hypernet.training import train_editor

    method = Malmen(tiny_config(Malmen, checkpoint=False))
    method.editor = method.build_editor(task, task.model)
    info = train_editor(method.editor, task, task.model, method.setup(task, task.model), method.config)
    start = info["history"][0]
    assert start["valid_gs"] is None
    assert start["valid_score"] == pytest.approx((start["valid_es"] + start["valid_ls"]) / 2)
