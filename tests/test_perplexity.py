"""WikiText-2 perplexity (`tasks.common.perplexity`) on a tiny model: the value is exp(mean NLL) of
the documented sample, computed here token by token; `ppl_tokens = 0` disables it; runs record it."""
import math
from dataclasses import dataclass

import pytest
import torch
from datadir import data_dir
from tiny import TinyCausalTask, char_tokenizer, tiny_causal

from editbench.api import TaskConfig
from editbench.errors import EditbenchError
from editbench.runner import RunSpec, run
from editbench.tasks.common.perplexity import (WIKITEXT2_TEST, context_length, first_tokens, perplexity,
                                               ppl_tokens_field, wikitext_perplexity)


@dataclass
class PplConfig(TaskConfig):
    ppl_tokens: int = ppl_tokens_field()


def nll_token_by_token(model, ids, window):
    """Sum of -log p(token | the tokens before it in its window), one position at a time."""
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = ids[start:start + window]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([chunk])).logits[0].double()
        for t in range(1, len(chunk)):
            total -= float(torch.log_softmax(logits[t - 1], -1)[chunk[t]])
            count += 1
    return total, count


def test_perplexity_is_exp_of_the_mean_nll_over_windows():
    model, tokenizer = tiny_causal("llama"), char_tokenizer()
    text = (data_dir() / WIKITEXT2_TEST.path).read_text(encoding="utf-8")
    ids = first_tokens(tokenizer, text, 300)
    assert ids == tokenizer(text[:2000], add_special_tokens=False)["input_ids"][:300]  # characters, here
    window = context_length(model)
    assert window == 128  # the tiny model's context (below the 512 cap)
    total, count = nll_token_by_token(model, ids, window)
    assert count == 300 - 3  # windows of 128, 128, 44: each window's first token is context only
    value, path = wikitext_perplexity(model, tokenizer, 300)
    assert path.name == "test.txt"
    assert value == pytest.approx(math.exp(total / count), rel=1e-5)
    assert perplexity(model, ids, 64) != pytest.approx(value, rel=1e-6)  # the windows matter


def test_first_tokens_never_cuts_a_word():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "aa": 1, "a": 2, "bb": 3, "b": 4}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=""))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    text = " ".join(["aaa", "bbbb"] * 200)
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    for count in (1, 2, 3, 7, 50, 333, len(full) + 5):
        assert first_tokens(tokenizer, text, count) == full[:count]


def test_task_reports_ppl_and_zero_disables_it():
    model = tiny_causal("gpt2")
    task = TinyCausalTask("gpt2", model=model, config=PplConfig(batch_size=8, ppl_tokens=200))
    facts = task.requests("eval", 2, 0)
    expected, _ = wikitext_perplexity(model, task.tokenizer, 200, data_dir())
    assert task.extra_metrics(model, facts) == {"ppl": pytest.approx(expected)}
    assert "wikitext-2/test.txt" in task.data_files()
    off = TinyCausalTask("gpt2", model=model, config=PplConfig(batch_size=8, ppl_tokens=0))
    assert off.extra_metrics(model, facts) == {}
    plain = TinyCausalTask("gpt2", model=model)  # a config without the field: no perplexity
    assert plain.extra_metrics(model, facts) == {}


def test_run_records_ppl_before_and_after_the_edit(tmp_path):
    model = tiny_causal("gpt2")
    before, _ = wikitext_perplexity(model, char_tokenizer(), 150, data_dir())
    task = TinyCausalTask("gpt2", model=model, config=PplConfig(batch_size=8, ppl_tokens=150))
    record = run(RunSpec(method="ft", edits=4, sets={}), task=task, write=False)
    assert record["pre"]["ppl"] == pytest.approx(before)
    after, _ = wikitext_perplexity(model, task.tokenizer, 150, data_dir())  # the model is the edited one now
    assert record["post"]["ppl"] == pytest.approx(after)
    assert record["post"]["ppl"] != record["pre"]["ppl"]
    assert "wikitext-2/test.txt" in record["data_sha256"]


def test_negative_ppl_tokens_is_refused():
    from editbench import registry

    with pytest.raises(EditbenchError, match="ppl_tokens"):
        registry.create("task", "zsre-smollm2", {"ppl_tokens": "-1"})


def test_the_facts_task_on_any_causal_lm_reports_ppl(tmp_path, monkeypatch):
    from editbench import registry

    monkeypatch.setenv("EDITBENCH_DATA", str(data_dir()))
    tiny_causal("llama").save_pretrained(tmp_path / "llama")
    char_tokenizer().save_pretrained(tmp_path / "llama")
    task = registry.create("task", "facts", {"model": str(tmp_path / "llama"), "ppl_tokens": "100"})
    model = task.load_model()
    expected, _ = wikitext_perplexity(model, task.tokenizer, 100)
    assert task.extra_metrics(model, []) == {"ppl": pytest.approx(expected)}
