"""Answer-token masking of causal tasks on tiny GPT-2, GPT-J and Llama twins."""
import pytest
import torch

from editbench.tasks.common.causal import CausalLMTask
from tiny import tiny_causal
from tiny_models_extra import CharTaskMixin


class CharCausal(CharTaskMixin, CausalLMTask):
    pass


def test_key_mask_marks_the_positions_that_output_the_answer():
    task = CharCausal()
    batch = task.batch([("Who is X?", "Bob"), ("Q?", "Alexandra")])
    ids = batch.inputs["input_ids"]
    mask = task.key_mask(batch, "any.module")
    # " Bob" = 4 answer tokens after the 9-char prompt: output at input positions 8..11.
    assert mask[0].nonzero().flatten().tolist() == list(range(8, 12))
    assert mask[1].nonzero().flatten().tolist() == list(range(1, 11))
    # The token at position t + 1 is the answer token predicted at key position t.
    for row in range(2):
        positions = mask[row].nonzero().flatten()
        assert ids[row, positions + 1].tolist() == batch.labels[row][batch.labels[row] != -100].tolist()
    assert task.key_mask(batch, "any.module", answer_only=False).sum(1).tolist() == [13, 12]


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
def test_nll_matches_the_model_loss_on_answer_tokens(arch):
    task = CharCausal()
    model = tiny_causal(arch)
    batch = task.batch([("Who is X?", "Bob"), ("Q?", "Alexandra")])
    hf_labels = torch.full_like(batch.inputs["input_ids"], -100)
    hf_labels[:, 1:] = batch.labels  # transformers shifts labels itself
    with torch.no_grad():
        reference = model(**batch.inputs, labels=hf_labels).loss
        assert torch.allclose(task.nll(model, batch), reference, atol=1e-5)
