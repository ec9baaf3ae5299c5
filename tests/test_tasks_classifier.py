"""Classifier machinery on a tiny random BERT: labels, logits, key masks, preparation cache."""
import hashlib
import json
import logging

import pytest
import torch

from editbench.data import user_cache
from editbench.errors import EditbenchError
from editbench.logs import set_level
from editbench.tasks.common.classifier import ClassifierTask, FirstTokenClassifier, is_prepared, load_prepared
from editbench.tasks.fever.task import FeverTask
from tiny import char_tokenizer
from tiny_models_extra import CharTaskMixin, tiny_bert

LABELS = ("REFUTES", "SUPPORTS")


class TinyClassifierTask(CharTaskMixin, ClassifierTask):
    label_names = LABELS

    def load_model(self, device="cpu", dtype=torch.float32):
        return FirstTokenClassifier(tiny_bert(2), 2).eval()


def test_batch_logits_and_key_masks():
    task = TinyClassifierTask()
    model = task.load_model()
    batch = task.batch([("The sky is blue.", "SUPPORTS"), ("No.", "REFUTES")])
    assert batch.labels.tolist() == [[1], [0]]
    logits = task.logits(model, batch)
    assert logits.shape == (2, 1, 2)
    with torch.no_grad():
        hidden = model.bert(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"]).last_hidden_state
    assert torch.allclose(logits[:, 0], model.head(hidden[:, 0]), atol=1e-6)
    first = task.key_mask(batch, "bert.encoder.layer.1.output.dense")
    assert first.shape == batch.inputs["input_ids"].shape
    assert first[:, 0].all() and not first[:, 1:].any()
    assert task.key_mask(batch, "bert.encoder.layer.1.output.dense", answer_only=False).sum(1).tolist() == [16, 3]


def test_unknown_label_is_an_error():
    with pytest.raises(EditbenchError, match="not a label"):
        TinyClassifierTask().batch([("x", "MAYBE")])


class TinyFever(FeverTask):
    """FEVER on a tiny random BERT; data from a temporary FEVER 1.0 file."""

    name = "tiny-fever"
    description = "tiny FEVER (tests only)"
    num_layers = 2

    def model_identity(self):
        return "tiny-bert"

    def base_encoder(self, dtype):
        return tiny_bert(2), char_tokenizer()


def fever_file(tmp_path, count=120):
    rows = [{"id": i, "claim": f"Claim {i} is {'true' if i % 2 else 'false'}.",
             "label": ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")[i % 3]} for i in range(count)]
    path = tmp_path / "fever.jsonl"
    path.write_text("\n".join(map(json.dumps, rows)) + "\n")
    return path


def tiny_fever(tmp_path, monkeypatch):
    import editbench.tasks.fever.task as fever_task

    monkeypatch.setattr(fever_task, "LOCAL_SPLITS", {"prep": 30, "train": 20, "valid": 10, "eval": 10, "unrelated": 10})
    path = fever_file(tmp_path)
    (tmp_path / "fever").mkdir()
    path = path.rename(tmp_path / "fever" / "x.jsonl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # data files are verified on resolve
    monkeypatch.setattr(fever_task, "FEVER_DEV", fever_task.FEVER_DEV.__class__(path="fever/x.jsonl", sha256=digest, url=""))
    return TinyFever(data_dir=tmp_path)


def test_prepare_caches_atomically_and_is_keyed_by_config(tmp_path, monkeypatch):
    task = tiny_fever(tmp_path, monkeypatch)
    info = task.prepare()
    assert info["prep_claims"] == 30 and len(info["epoch_losses"]) == 2
    folder = task._prepared_folder("tiny-bert")
    assert is_prepared(folder) and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []
    model = task.load_model()
    assert isinstance(model, FirstTokenClassifier) and not model.training
    again, _ = load_prepared(folder, 2, "cpu", torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    other = TinyFever(TinyFever.Config(prepare_epochs=1), data_dir=tmp_path)
    assert other._prepared_folder("tiny-bert") != folder
    assert folder.is_relative_to(user_cache() / "models")
    requests = task.requests("eval", 5, seed=0)
    assert all(r.target != r.original and r.equivalents == () and len(r.unrelated) == 1 for r in requests)


def test_a_damaged_prepared_classifier_is_prepared_again_never_loaded(tmp_path, monkeypatch, capsys):
    from editbench.errors import CorruptArtifact

    task = tiny_fever(tmp_path, monkeypatch)
    first = task.load_model()  # prepares it
    folder = task._prepared_folder("tiny-bert")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = torch.randn((len(data) - header) // 4).numpy().tobytes()  # same size, still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="model.safetensors is corrupt"):
        load_prepared(folder, 2, "cpu", torch.float32)
    capsys.readouterr()
    set_level(logging.INFO)  # "preparing ..." is progress (INFO): shown with editbench -v
    try:
        again = task.load_model()
    finally:
        set_level(logging.WARNING)
    err = capsys.readouterr().err
    assert "model.safetensors is corrupt" in err and f"preparing {task.name}" in err
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # prepared again, the same weights


def test_a_prepared_folder_of_an_older_editbench_is_adopted(tmp_path, monkeypatch):
    import editbench.tasks.fever.task as fever_task
    from editbench.files import MANIFEST

    task = tiny_fever(tmp_path, monkeypatch)
    info = task.prepare()
    folder = task._prepared_folder("tiny-bert")
    (folder / MANIFEST).unlink()  # written before folders had manifests

    def no_finetune(*args, **kwargs):
        raise AssertionError("prepared again")
    monkeypatch.setattr(fever_task, "finetune", no_finetune)
    assert task.prepare() == info and (folder / MANIFEST).is_file()
    assert isinstance(task.load_model(), FirstTokenClassifier)
