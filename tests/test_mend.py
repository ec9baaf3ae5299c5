"""MEND: both training modes of the `Mend` method give the same meta-gradient (float64, tiny GPT-2)."""
import copy

import torch

from editbench.methods.hypernet.meta import meta_gradient
from editbench.methods.hypernet.training import meta_batch
from editbench.methods.mend import Mend
from tiny import TinyCausalTask, tiny_causal


def test_mend_setup_is_mitchell_et_al():
    task = TinyCausalTask("gpt2")
    setup = Mend().setup(task)
    assert setup.names == task.edit_modules("mend") and not setup.answer_only and setup.aggregation == "sum"
    assert len({tuple(s) for s in Mend().build_editor(task, task.load_model()).shapes.values()}) == 2


def test_mend_modes_give_the_same_meta_gradient():
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2", dtype=torch.float64))
    grads = {}
    for mode in ("economic", "concatenated"):
        method = Mend(Mend.Config(rank=8, init_lr=0.05, training_mode=mode, lm_batch_size=2, chunk_size=13))
        torch.manual_seed(0)
        editor = method.build_editor(task, task.model)
        with torch.no_grad():
            for p in editor.nets.parameters():
                p.add_(0.05 * torch.randn_like(p))
        editor = copy.deepcopy(editor)
        meta_gradient(editor, task, task.model, meta_batch(task.requests("train", 3, 4), 0), method.setup(task), mode)
        grads[mode] = {n: p.grad for n, p in editor.named_parameters() if p.grad is not None}
    assert grads["economic"].keys() == grads["concatenated"].keys()
    for name, grad in grads["concatenated"].items():
        torch.testing.assert_close(grads["economic"][name], grad, rtol=1e-7, atol=1e-12, msg=name)
