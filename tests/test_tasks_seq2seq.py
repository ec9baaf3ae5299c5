"""Seq2seq machinery on a tiny random T5: label alignment, decoding, key masks, FT."""
import torch

from editbench.api import EditRequest
from editbench.tasks.common.layers import t5_modules_for
from editbench.tasks.common.seq2seq import Seq2SeqTask
from tiny_models_extra import CharTaskMixin, tiny_t5


class TinySeq2SeqTask(CharTaskMixin, Seq2SeqTask):
    def load_model(self, device="cpu", dtype=torch.float32):
        return tiny_t5(2).to(device, dtype)

    def edit_modules(self, role):
        return t5_modules_for(2, role)


PAIRS = [("Where is Xa?", "Paris"), ("Who?", "Bo")]


def test_batch_labels_are_the_answer_ids_without_eos():
    task = TinySeq2SeqTask()
    batch = task.batch(PAIRS)
    ids = task.tokenizer("Paris", add_special_tokens=False)["input_ids"]
    assert batch.labels.shape == (2, 5)
    assert batch.labels[0].tolist() == ids
    assert batch.labels[1, 2:].tolist() == [-100] * 3
    assert batch.inputs["input_ids"].shape[1] == len("Where is Xa?")
    assert batch.inputs["attention_mask"][1].sum() == len("Who?")


def test_logits_align_with_labels_and_match_the_model_loss():
    task = TinySeq2SeqTask()
    model = task.load_model()
    batch = task.batch(PAIRS)
    logits = task.logits(model, batch)
    assert logits.shape[:2] == batch.labels.shape
    with torch.no_grad():
        reference = model(**batch.inputs, labels=batch.labels).loss
    assert torch.allclose(task.nll(model, batch), reference, atol=1e-5)


def test_teacher_forced_argmax_matches_greedy_decoding():
    task = TinySeq2SeqTask()
    model = task.load_model()
    batch = task.batch(PAIRS[:1])
    with torch.no_grad():
        generated = model.generate(**batch.inputs, max_new_tokens=5, do_sample=False, num_beams=1)[0, 1:]
        # Feed the greedy output back as labels: each teacher-forced argmax must reproduce it.
        forced = batch.__class__(batch.inputs, generated[None])
        argmax = task.logits(model, forced).argmax(-1)[0]
    assert argmax.tolist() == generated.tolist()


def test_key_masks_per_stack():
    task = TinySeq2SeqTask()
    batch = task.batch(PAIRS)
    encoder_mask = task.key_mask(batch, "encoder.block.1.layer.1.DenseReluDense.wo")
    decoder_mask = task.key_mask(batch, "decoder.block.1.layer.2.DenseReluDense.wo")
    assert encoder_mask.shape == batch.inputs["input_ids"].shape
    assert encoder_mask.tolist() == batch.inputs["attention_mask"].bool().tolist()
    assert decoder_mask.tolist() == (batch.labels != -100).tolist()
    assert task.key_mask(batch, "decoder.block.1.layer.2.DenseReluDense.wo", answer_only=False).sum() == 7


def test_ft_edits_a_t5_through_the_task_contract():
    from editbench.methods.ft import FineTune, FineTuneConfig

    task = TinySeq2SeqTask()
    model = task.load_model()
    requests = [EditRequest(id="a", prompt="Where is Xa?", target="Paris"), EditRequest(id="b", prompt="Who?", target="Bo")]
    batch = task.batch([(r.prompt, r.target) for r in requests])
    with torch.no_grad():
        before = float(task.nll(model, batch))
    result = FineTune(FineTuneConfig(lr=3e-2, epochs=3)).edit(task, model, requests)
    assert set(result.deltas) == set(task.edit_modules("ft"))
    with torch.no_grad():
        assert float(task.nll(model, batch)) < before
