"""Prompt formats of causal tasks (raw, qa, chat, chat-end) on a character tokenizer with a chat template."""
from dataclasses import dataclass, field

import pytest

from editbench.api import TaskConfig
from editbench.errors import EditbenchError
from editbench.tasks.common.causal import CausalLMTask
from datadir import data_dir
from tiny import char_tokenizer
from tiny_models_extra import CharTaskMixin

TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}<eos>{% endfor %}"
            "{% if add_generation_prompt %}[assistant]{% endif %}")


@dataclass
class FormatConfig(TaskConfig):
    prompt_format: str = field(default="chat")


class CharCausal(CharTaskMixin, CausalLMTask):
    def __init__(self, style: str):
        super().__init__()
        self.config = FormatConfig(batch_size=4, prompt_format=style)
        self.tokenizer = char_tokenizer()
        self.tokenizer.chat_template = TEMPLATE


def decoded(task, ids):
    # The character vocabulary has no newline: "\n" reads back as "<unk>".
    return "".join(task.tokenizer.convert_ids_to_tokens(ids)).replace("<unk>", "\n")


@pytest.mark.parametrize("style, context, answer", [
    ("raw", "Who is X?", " Bob"),
    ("qa", "Question: Who is X?\nAnswer:", " Bob"),
    ("chat", "[user]Who is X?<eos>[assistant]", "Bob"),
    ("chat-end", "[user]Who is X?<eos>[assistant]", "Bob<eos>"),
])
def test_batch_formats_the_tuple_and_labels_only_the_answer(style, context, answer):
    task = CharCausal(style)
    batch = task.batch([("Who is X?", " Bob "), ("Q?", "Alexandra")])
    ids = batch.inputs["input_ids"][0][batch.inputs["attention_mask"][0].bool()].tolist()
    assert decoded(task, ids) == context + answer
    labels = batch.labels[0][batch.labels[0] != -100].tolist()
    assert decoded(task, labels) == answer
    # The key mask marks the positions that output the answer: the next token is the label.
    positions = task.key_mask(batch, "any.module")[0].nonzero().flatten()
    assert batch.inputs["input_ids"][0, positions + 1].tolist() == labels


@pytest.mark.parametrize("style", ["raw", "qa", "chat", "chat-end"])
def test_subject_token_index_points_at_the_subject_in_the_formatted_sequence(style):
    task = CharCausal(style)
    prompt, subject = "Where does Xavi play?", "Xavi"
    index = task.subject_token_index(prompt, subject)
    ids = task.batch([(prompt, "Barcelona")]).inputs["input_ids"][0].tolist()
    # The character tokenizer has one token per character: the subject ends at `index`.
    assert decoded(task, ids[index - len(subject) + 1: index + 1]) == subject
    prefixed = "Some context. " + prompt  # MEMIT's prefixed prompts
    index = task.subject_token_index(prefixed, subject)
    ids = task.batch([(prefixed, "Barcelona")]).inputs["input_ids"][0].tolist()
    assert decoded(task, ids[index - len(subject) + 1: index + 1]) == subject


def test_a_task_without_the_setting_keeps_the_raw_format():
    task = CharCausal("raw")
    task.config = TaskConfig(batch_size=4)
    assert task.prompt_format == "raw"
    ids = task.batch([("Q?", "A")]).inputs["input_ids"][0].tolist()
    assert decoded(task, ids) == "Q? A"


def test_unknown_format_and_missing_chat_template_are_one_line_errors():
    with pytest.raises(EditbenchError, match="prompt_format 'chatml' is not one of"):
        CharCausal("chatml").batch([("Q?", "A")])
    task = CharCausal("chat")
    task.tokenizer.chat_template = None
    with pytest.raises(EditbenchError, match="needs a tokenizer with a chat template"):
        task.batch([("Q?", "A")])


def test_smollm2_tasks_default_to_the_chat_format_and_paper_tasks_to_raw():
    from editbench import registry

    with pytest.raises(EditbenchError, match="bad --set prompt_format='chatml' for task zsre-smollm2: "
                                             "expected one of 'raw', 'qa', 'chat', 'chat-end'"):
        registry.create("task", "zsre-smollm2", {"prompt_format": "chatml"})

    for name in ("zsre-smollm2", "counterfact-smollm2"):
        assert registry.load("task", name).Config().prompt_format == "chat"
    for name in ("zsre-gpt2", "zsre-gptj", "counterfact-gptj"):
        assert not hasattr(registry.load("task", name).Config(), "prompt_format")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zsre-smollm2", "counterfact-smollm2"])
def test_smollm2_chat_format_on_the_real_model(name):
    """In its chat template SmolLM2 no longer ends its answer before it starts (raw: 46 of 64 zsRE
    edit prompts predict `<|im_end|>` first), and subjects are located in the formatted tokens."""
    from editbench import registry

    task = registry.create("task", name, {}, data_dir=data_dir())
    model = task.load_model()
    requests = task.requests("eval", 16, 0)
    end = task.tokenizer.convert_tokens_to_ids("<|im_end|>")
    outcomes = task.evaluate(model, requests)
    firsts = [t.predicted[0] for o in outcomes for t in [o.edit, *o.unrelated]]
    assert sum(token == end for token in firsts) <= len(firsts) // 8
    assert all(end not in o.edit.gold for o in outcomes)  # `chat`: the labels stop before <|im_end|>
    for r in requests:
        if r.subject:
            index = task.subject_token_index(r.prompt, r.subject)
            ids = task.batch([(r.prompt, r.target)]).inputs["input_ids"][0]
            assert task.tokenizer.decode(ids[: index + 1]).rstrip().endswith(r.subject.strip()[-3:])
