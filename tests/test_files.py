"""Atomic writes of files and folders, and the prepared-classifier folder built with them."""
import pytest
import torch

from editbench.files import atomic_folder, write_atomic
from editbench.tasks.common.classifier import FirstTokenClassifier, load_prepared, save_prepared
from tiny import char_tokenizer
from tiny_models_extra import tiny_bert


def test_write_atomic_leaves_only_the_target(tmp_path):
    write_atomic(tmp_path / "a" / "f.txt", b"one")
    write_atomic(tmp_path / "a" / "f.txt", b"two")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.txt"]
    assert (tmp_path / "a" / "f.txt").read_bytes() == b"two"


def test_atomic_folder_replaces_on_success_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as staging:
        (staging / "w").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            (staging / "w").write_text("half-written")
            raise RuntimeError("crash while writing")
    assert (target / "w").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


def test_prepared_classifier_round_trip(tmp_path):
    model = FirstTokenClassifier(tiny_bert(), 2)
    folder = tmp_path / "prepared"
    for _ in range(2):  # the second save replaces the first
        save_prepared(folder, model, char_tokenizer(), {"epochs": 2})
    loaded, tokenizer = load_prepared(folder, 2, "cpu", torch.float32)
    ids = torch.tensor([tokenizer("a claim")["input_ids"]])
    mask = torch.ones_like(ids)
    assert torch.equal(loaded(ids, mask).logits, model.eval()(ids, mask).logits)
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
