"""The `facts` task: any causal LM folder (saved with save_pretrained) and a fact file written here,
in the zsRE and the CounterFact layouts, run by every method through the command line."""
import json

import pytest
import torch
from click.testing import CliRunner
from datadir import data_dir

from editbench.cli import main
from editbench.errors import EditbenchError
from editbench.registry import create
from editbench.tasks.common.layers import modules_for
from editbench.tasks.common.nq import as_prompt
from editbench.tasks.common.structure import find_architecture
from tiny import LAYERS, char_tokenizer, synthetic_requests, tiny_causal

FACTS = 40  # split 20 / 4 / 16 by the default fractions (0.5, 0.1)


def zsre_records(count=FACTS):
    """zsRE (MEND layout) records: a question, its answer, a rephrase, a subject, and for every other
    record an NQ-style locality question (the rest take one from NQ-open)."""
    out = []
    for i, r in enumerate(synthetic_requests(count, seed=1)):
        record = {"src": r.prompt, "answers": [r.target], "rephrase": r.equivalents[0], "alt": r.target[::-1],
                  "subject": r.subject}
        if i % 2 == 0:
            record.update(loc=f"nq question: {r.unrelated[0][0]}", loc_ans=r.unrelated[0][1])
        out.append(record)
    return out


def counterfact_records(count=FACTS):
    """CounterFact (MEND layout) records, one JSON object a line."""
    return [{"case_id": i, "prompt": r.prompt, "subject": r.subject, "target_new": r.target,
             "ground_truth": r.target[::-1], "rephrase_prompt": r.equivalents[0],
             "locality_prompt": r.unrelated[0][0], "locality_ground_truth": r.unrelated[0][1]}
            for i, r in enumerate(synthetic_requests(count, seed=2))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    for arch in ("gpt2", "llama"):
        tiny_causal(arch).save_pretrained(root / arch)
        char_tokenizer().save_pretrained(root / arch)
    (root / "zsre.json").write_text(json.dumps(zsre_records()))
    (root / "cf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in counterfact_records()))
    return root


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDITBENCH_DATA", str(data_dir()))
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


HYPERNET = ["rank=16", "train_steps=2", "lm_batch_size=8", "valid_every=2", "valid_edits=4", "init_lr=1e-3"]
SETTINGS = {
    "ft": ["epochs=3", "lr=1e-2"],
    "memit": ["stats_samples=20", "steps=4", "clamp_norm_factor=4.0", "update_weight=1.0", "prefixes=",
              "weight_decay=0.0"],
    **{m: HYPERNET for m in ("malmen", "malmen-sum-shifts", "malmen-no-reg", "malmen-cache-all", "malmen-first-fc",
                             "mend", "mend-mitchell")},
}


def run(files, out, method, arch, facts, *extra):
    args = ["run", "--task", "facts", "--method", method, "--edits", "4", "--out", str(out),
            "--set", f"model={files / arch}", "--set", f"facts={files / facts}"]
    for setting in SETTINGS[method] + list(extra):
        args += ["--set", setting]
    return CliRunner().invoke(main, args)


def records(out):
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", list(SETTINGS))
def test_every_method_runs_on_a_llama_folder_and_zsre_facts(files, env, method):
    result = run(files, env / "store", method, "llama", "zsre.json")
    if method == "malmen-no-reg" and result.exit_code == 2:
        # lambda = 0 with fewer answer keys than the key width: the paper's failure, reported in one line
        assert "singular" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return
    assert result.exit_code == 0, result.stderr + result.output
    (record,) = records(env / "store")
    assert record["task"] == "facts" and record["method"] == method and record["edits"] == 4
    assert record["config"]["task"]["model"] == str(files / "llama")
    assert record["data_sha256"]["zsre.json"] and "nq/NQ-open.dev.jsonl" in record["data_sha256"]
    assert all(".layers." in name and ".mlp." in name for name in record["delta_norms"])
    assert any(value > 0 for value in record["delta_norms"].values())
    assert record["pre"]["retention"] == 1.0 and record["post"]["ls"] is not None


@pytest.mark.parametrize("method", ["ft", "malmen", "mend", "memit"])
def test_methods_run_on_a_gpt2_folder_and_counterfact_facts(files, env, method):
    result = run(files, env / "store", method, "gpt2", "cf.jsonl")
    assert result.exit_code == 0, result.stderr + result.output
    (record,) = records(env / "store")
    assert all(name.startswith("transformer.h.") for name in record["delta_norms"])
    assert "cf.jsonl" in record["data_sha256"] and "nq/NQ-open.dev.jsonl" not in record["data_sha256"]


def test_ft_edits_the_facts(files, env):
    result = run(files, env / "store", "ft", "llama", "zsre.json", "epochs=30")
    assert result.exit_code == 0, result.stderr
    (record,) = records(env / "store")
    assert record["post"]["es"] > record["pre"]["es"] + 0.3


def task(files, **settings):
    return create("task", "facts", {"model": str(files / "llama"), "facts": str(files / "zsre.json"), **settings})


def test_layouts_splits_and_unrelated_tuples(files, env):
    default = task(files)
    assert [default.split_size(s) for s in ("train", "valid", "eval")] == [20, 4, 16]
    ids = [r.id for s in ("train", "valid", "eval") for r in default.requests(s, default.split_size(s), 0)]
    assert len(set(ids)) == FACTS  # disjoint splits covering the file
    by_prompt = {r["src"]: r for r in zsre_records()}
    for request in default.requests("eval", 16, 0):
        record = by_prompt[request.prompt]
        assert request.target == record["answers"][0] and request.equivalents == (record["rephrase"],)
        assert request.subject == record["subject"] and len(request.unrelated) == 1
        if "loc" in record:  # the file's own locality question, else one from NQ-open
            assert request.unrelated[0] == (as_prompt(record["loc"]), record["loc_ans"])
    assert all(r.unrelated == () for r in task(files, unrelated="none").requests("eval", 16, 0))
    assert sum(bool(r.unrelated) for r in task(files, unrelated="file").requests("eval", 16, 0)) < 16
    whole = task(files, train_fraction=0.0, valid_fraction=0.0)
    assert whole.split_size("eval") == FACTS and whole.split_size("train") == 0
    cf = create("task", "facts", {"model": str(files / "gpt2"), "facts": str(files / "cf.jsonl"), "layout": "auto"})
    (request,) = cf.requests("eval", 1, 0)
    assert request.id.startswith("counterfact-") and request.unrelated and request.original


@pytest.mark.parametrize("settings, message", [
    ({"model": ""}, "needs --set model=NAME_OR_PATH"),
    ({"model": "./no/such/model"}, "model path './no/such/model' does not exist"),
    ({"layout": "mend"}, "bad --set layout='mend' for task facts"),
    ({"train_fraction": 0.6, "valid_fraction": 0.4}, "leave no facts to edit"),
])
def test_bad_settings_are_one_line(files, settings, message):
    with pytest.raises(EditbenchError, match=message.replace(".", r"\.").replace("(", r"\(")):
        task(files, **settings)


def test_without_a_fact_file_only_the_splits_are_refused(files, env):
    bare = create("task", "facts", {"model": str(files / "llama")})
    with pytest.raises(EditbenchError, match="task 'facts' needs --set facts=FILE"):
        bare.split_size("eval")
    result = CliRunner().invoke(main, ["run", "--task", "facts", "--set", f"model={files / 'llama'}",
                                       "--out", str(env / "store")])
    assert result.exit_code == 2 and "needs --set facts=FILE" in result.stderr and not (env / "store").exists()


def test_python_api_edits_any_checkpoint_folder_with_facts_given_directly(files, env):
    import editbench

    target = editbench.load("facts", model=files / "gpt2")
    facts = [{"prompt": "Where does Anna live?", "target": "oslo", "rephrases": ["Anna lives in which town?"],
              "subject": "Anna"}]
    out = editbench.edit(target, facts, method="ft", settings={"epochs": 30, "lr": 1e-2})
    assert sorted(out.deltas) == sorted(modules_for("gpt2", LAYERS, "ft"))
    assert out.scores[0]["post"]["es"] > out.scores[0]["pre"]["es"]
    out.revert()


def test_missing_model_path_on_the_command_line_is_one_line(files, env):
    result = CliRunner().invoke(main, ["run", "--task", "facts", "--set", "model=./missing-model",
                                       "--set", f"facts={files / 'zsre.json'}", "--out", str(env / "store")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["editbench: error: model path './missing-model' does not exist"]
    assert not (env / "store").exists()


def test_a_file_of_unknown_layout_names_its_fields(files, tmp_path):
    (tmp_path / "odd.json").write_text(json.dumps([{"question": "a?", "answer": "b"}]))
    with pytest.raises(EditbenchError, match="cannot tell the layout from its fields \\(answer, question\\)"):
        create("task", "facts", {"model": str(files / "llama"), "facts": str(tmp_path / "odd.json")}).split_size("eval")


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "llama"])
def test_structure_finds_the_known_families_as_the_built_in_tasks_name_them(arch):
    architecture, blocks = find_architecture(tiny_causal(arch))
    assert blocks == LAYERS
    from editbench.tasks.common.layers import architecture_modules

    for role in ("ft", "malmen", "malmen-first-fc", "mend"):
        assert architecture_modules(architecture, blocks, role) == modules_for(arch, LAYERS, role)


@pytest.mark.parametrize("config_name, expected", [
    ("GPTNeoXConfig", ("gpt_neox.layers.{i}", ("mlp.dense_h_to_4h",), "mlp.dense_4h_to_h")),
    ("OPTConfig", ("model.decoder.layers.{i}", ("fc1",), "fc2")),
])
def test_structure_finds_the_ffn_of_an_unknown_family_by_shape(config_name, expected):
    import transformers as tf

    config = getattr(tf, config_name)(vocab_size=98, hidden_size=32, intermediate_size=64, ffn_dim=64,
                                      num_hidden_layers=3, num_attention_heads=4, word_embed_proj_dim=32,
                                      max_position_embeddings=64)
    with torch.device("meta"):
        model = tf.AutoModelForCausalLM.from_config(config)
    architecture, blocks = find_architecture(model)
    assert (architecture.block, architecture.ffn_in, architecture.ffn_out) == expected and blocks == 3


def test_edit_modules_before_the_model_loads_read_the_config_only(files):
    fresh = task(files)
    assert fresh.edit_modules("malmen") == [f"model.layers.{i}.mlp.down_proj" for i in range(LAYERS)]
    assert fresh.edit_modules("memit") == ["model.layers.0.mlp.down_proj"]  # 3/28 of 4 blocks, width 6/28 of 4
    assert fresh.edit_modules("ft") == modules_for("llama", LAYERS, "ft")
