"""A corrupt model cache gives one clear error naming the folder, not a traceback from transformers."""
import pytest

from editbench.data import user_cache
from editbench.errors import EditbenchError
from editbench.tasks.common.smollm2 import load_smollm2


def test_corrupt_smollm2_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path))
    folder = user_cache() / "models" / "smollm2-135m-instruct-f32"
    folder.mkdir(parents=True)
    (folder / ".complete").write_text("x\n")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(EditbenchError, match="cached model in .*smollm2-135m-instruct-f32 is corrupt"):
        load_smollm2("cpu", None)
