"""MEND: both training modes of the `Mend` method give the same meta-gradient (float64, tiny GPT-2)."""
import copy

import torch

from editbench.methods.hypernet.meta import meta_gradient
from editbench.methods.hypernet.training import meta_batch
from editbench.methods.malmen import Malmen
from editbench.methods.mend import Mend, MendMitchell
from tiny import TinyCausalTask, tiny_causal


def test_mend_is_the_papers_and_mend_mitchell_keeps_mitchells_layers():
    """`mend` vs `malmen` differs only in aggregation and cached tokens (MALMEN A.7); `mend-mitchell`
    edits both FFN linears of the last 3 blocks (Mitchell et al. 2022)."""
    task = TinyCausalTask("gpt2")
    model = task.load_model()
    mend, malmen = Mend().setup(task, model), Malmen().setup(task, model)
    assert mend.names == malmen.names and not mend.answer_only and mend.aggregation == "sum"
    assert malmen.answer_only and malmen.aggregation == "normal"
    mitchell = MendMitchell().setup(task, model)
    assert mitchell.names == task.edit_modules("mend") and not mitchell.answer_only and mitchell.aggregation == "sum"
    assert len({tuple(s) for s in MendMitchell().build_editor(task, model).shapes.values()}) == 2


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
        meta_gradient(editor, task, task.model, meta_batch(task.requests("train", 3, 4), 0), method.setup(task, task.model), mode)
        grads[mode] = {n: p.grad for n, p in editor.named_parameters() if p.grad is not None}
    assert grads["economic"].keys() == grads["concatenated"].keys()
    for name, grad in grads["concatenated"].items():
        torch.testing.assert_close(grads["economic"][name], grad, rtol=1e-7, atol=1e-12, msg=name)
