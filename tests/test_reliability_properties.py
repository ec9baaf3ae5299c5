"""Property-based tests (hypothesis) of the CLI's options, the config checks, the data loaders and
the results reader: any input ends in a validated value or one `EditbenchError` line, never a traceback."""
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from editbench.config import build_config
from editbench.data import DataFile, first_json_records, own_data, resolve
from editbench.errors import EditbenchError
from editbench.methods.ft import FineTuneConfig
from editbench.methods.hypernet.config import HypernetConfig
from editbench.results import check_record, read_runs

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "0", "-0", "1e30", "1e-30", "", "none", "x", "1.5"]))


def _fields(cls):
    return [f.name for f in dataclasses.fields(cls)]


def _checks_hold(config):
    for f in dataclasses.fields(config):
        check = f.metadata.get("check")
        assert check is None or check(getattr(config, f.name)), (f.name, getattr(config, f.name))


@pytest.mark.parametrize("cls", [FineTuneConfig, HypernetConfig])
@SETTINGS
@given(data=st.data())
def test_any_override_is_a_checked_config_or_one_error(cls, data):
    keys = data.draw(st.lists(st.sampled_from(_fields(cls)), max_size=4, unique=True))
    overrides = {k: data.draw(st.one_of(numbers, st.text(max_size=12))) for k in keys}
    try:
        config = build_config(cls, overrides, "method m")
    except EditbenchError as exc:
        assert "\n" not in str(exc)
        return
    _checks_hold(config)


@pytest.fixture
def stub_execute(monkeypatch, tmp_path):
    """Replace the heavy part of a run (load, edit, score) by a stub that records what reached it."""
    from editbench import runner

    reached = []

    def fake(spec, method, task, preset_name, preset, device, out):
        reached.append((spec, method.config, task.config, out))
        return {"method": spec.method, "task": spec.task, "edits": spec.edits, "seed": spec.seed,
                "pre": {k: 0.0 for k in ("es", "gs", "ls", "retention")},
                "post": {k: 0.0 for k in ("es", "gs", "ls", "retention")}, "train_seconds": 0.0,
                "edit_seconds": 0.0, "peak_memory_bytes": 1, "method_stats": {}}

    monkeypatch.setattr(runner, "_execute", fake)
    return reached


option_sets = st.fixed_dictionaries({
    "--edits": st.one_of(st.integers(-5, 2000), st.sampled_from([0, 1, 32])).map(str),
    "--dtype": st.sampled_from(["float32", "bfloat16", "float16", "float64", "int8", ""]),
    "--device": st.sampled_from(["cpu", "auto", "tpu", "cuda:9", ""]),
    "--seed": st.integers(-3, 3).map(str),
}, optional={"--set": st.lists(st.tuples(st.sampled_from(_fields(FineTuneConfig) + ["task.batch_size", "nope", "model"]),
                                          numbers), max_size=3)})


@SETTINGS
@given(options=option_sets)
def test_run_options_are_validated_before_any_work(stub_execute, tmp_path, options):
    from click.testing import CliRunner

    from editbench.cli import main

    args = ["run", "--method", "ft", "--task", "zsre-smollm2", "--out", str(tmp_path / "store")]
    for key, value in options.items():
        if key == "--set":
            for name, raw in value:
                args += ["--set", f"{name}={raw}"]
        else:
            args += [key, value]
    before = len(stub_execute)
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 2), (args, result.output, result.exception)
    if result.exit_code == 2:
        assert len(stub_execute) == before  # stopped before the model would load
        return
    spec, method_config, task_config, out = stub_execute[-1]
    _checks_hold(method_config)
    assert 1 <= spec.edits and spec.dtype in ("float32", "bfloat16", "float64") and Path(out).is_dir()


ZSRE = "zsre/file.json"


@SETTINGS
@given(payload=st.binary(max_size=200), known=st.booleans(), own=st.booleans())
def test_a_local_data_file_is_used_only_when_verified_or_declared_own(tmp_path_factory, payload, known, own):
    folder = tmp_path_factory.mktemp("data")
    (folder / "zsre").mkdir()
    (folder / ZSRE).write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    spec = DataFile(ZSRE, digest if known else hashlib.sha256(payload + b"!").hexdigest(), "http://127.0.0.1:9/x")
    try:
        with own_data(own):
            path = resolve(spec, folder)
    except EditbenchError as exc:
        assert not known and not own and digest in str(exc) and spec.sha256 in str(exc)
        return
    assert path == folder / ZSRE and (known or own)


@SETTINGS
@given(records=st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
                        max_size=20), count=st.integers(0, 25))
def test_first_json_records_keeps_exactly_the_first_records(records, count):
    assert json.loads(first_json_records(count)(json.dumps(records).encode())) == records[:count]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4), max_leaves=12)
metric_dicts = st.fixed_dictionaries({k: st.none() | st.floats(-0.5, 1.5) for k in ("es", "gs", "ls")})
run_like = st.fixed_dictionaries({"method": st.sampled_from(["ft", "", 3]), "task": st.just("t"),
                                  "edits": st.sampled_from([4, 0, "many", 2.5, True]),
                                  "pre": metric_dicts, "post": metric_dicts | st.none()})


@SETTINGS
@given(lines=st.lists(run_like | json_values | st.text(max_size=20), min_size=1, max_size=12))
def test_read_runs_never_fails_and_keeps_only_valid_records(tmp_path_factory, capsys, lines):
    folder = tmp_path_factory.mktemp("store")
    text = "".join((line if isinstance(line, str) else json.dumps(line)).replace("\n", " ") + "\n" for line in lines)
    (folder / "runs.jsonl").write_text(text)
    capsys.readouterr()
    kept = read_runs(folder)
    assert all(check_record(r) is None for r in kept)
    skipped = capsys.readouterr().err.count("skipping")
    assert len(kept) + skipped == sum(1 for line in text.splitlines() if line.strip())
