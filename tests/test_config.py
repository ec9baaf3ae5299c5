from dataclasses import dataclass

import pytest

from editbench.config import build_config, parse_sets, split_overrides
from editbench.errors import EditbenchError


@dataclass
class Cfg:
    lr: float = 1e-3
    steps: int = 3
    flag: bool = False
    layers: tuple[int, ...] = (1, 2)
    name: str | None = None


def test_overrides_are_typed():
    cfg = build_config(Cfg, {"lr": "1e-4", "steps": "7", "flag": "true", "layers": "3,4", "name": "none"}, "m")
    assert cfg == Cfg(lr=1e-4, steps=7, flag=True, layers=(3, 4), name=None)


@pytest.mark.parametrize("sets, message", [
    ({"nope": "1"}, "bad --set 'nope'"),
    ({"steps": "x"}, "bad --set steps='x'"),
    ({"flag": "maybe"}, "bad --set flag='maybe'"),
])
def test_bad_overrides_name_the_value(sets, message):
    with pytest.raises(EditbenchError, match=message):
        build_config(Cfg, sets, "m")


def test_parse_sets_rejects_missing_equals():
    assert parse_sets(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(EditbenchError, match="expected KEY=VALUE"):
        parse_sets(["lr"])


def test_split_overrides_routes_by_scope():
    class M:
        name = "m"
        Config = Cfg

    @dataclass
    class TC:
        model: str = ""
        steps: int = 1

    class T:
        name = "t"
        Config = TC

    method, task = split_overrides({"lr": "1", "model": "x", "task.steps": "2", "method.steps": "5"}, M, T)
    assert method == {"lr": "1", "steps": "5"} and task == {"model": "x", "steps": "2"}


def test_split_overrides_rejects_a_key_both_configs_have():
    class M:
        name = "m"
        Config = Cfg

    @dataclass
    class TC:
        steps: int = 1

    class T:
        name = "t"
        Config = TC

    with pytest.raises(EditbenchError, match=r"ambiguous --set 'steps'.*method\.steps or task\.steps"):
        split_overrides({"steps": "2"}, M, T)
    assert split_overrides({"method.steps": "2"}, M, T) == ({"steps": "2"}, {})
