"""The restart policy's settings reach the supervisor from ``train()``, a recipe and the command
line, each checked before anything runs."""

import inspect
import math

import pytest
import yaml

import yolo_rdna1
from yolo_rdna1.cli import main
from yolo_rdna1.options import OptionError
from yolo_rdna1.supervision import RestartPolicy

POLICY_KEYS = ("max_restarts", "backoff_s", "max_restarts_per_hour", "stop_grace_s")


@pytest.fixture
def supervised(monkeypatch):
    """The supervisor records the arguments and the policy it was given instead of training."""
    import yolo_rdna1.supervision

    calls = []

    def supervise(kwargs, policy):
        calls.append((kwargs, policy))
        return "run-dir"

    monkeypatch.setattr(yolo_rdna1.supervision, "supervise", supervise)
    return calls


def test_train_defaults_are_the_policy_defaults():
    defaults = {k: p.default for k, p in inspect.signature(yolo_rdna1.train).parameters.items() if k in POLICY_KEYS}
    assert defaults == {k: getattr(RestartPolicy(), k) for k in POLICY_KEYS}


def test_restart_options_reach_the_policy_from_train_a_recipe_and_command_line(synthetic_data, tmp_path, supervised):
    data, project = str(synthetic_data), str(tmp_path)
    yolo_rdna1.train(data=data, supervise=True, max_restarts_per_hour=3, stop_grace_s=5, project=project)
    kwargs, policy = supervised[-1]
    assert (policy.max_restarts_per_hour, policy.stop_grace_s, policy.max_restarts) == (3, 5.0, 10)
    assert "max_restarts_per_hour" not in kwargs and "stop_grace_s" not in kwargs, "not training arguments"

    recipe = tmp_path / "long.yaml"
    settings = {"supervise": True, "max_restarts": 4, "backoff_s": 2, "max_restarts_per_hour": 6, "stop_grace_s": 30}
    recipe.write_text(yaml.safe_dump(settings))
    line = ["train", f"recipe={recipe}", f"data={data}", f"project={project}"]
    assert main(line) == 0
    assert [getattr(supervised[-1][1], k) for k in POLICY_KEYS] == [4, 2.0, 6, 30.0]

    assert main([*line, "max_restarts_per_hour=None", "stop_grace_s=2.5"]) == 0
    assert [getattr(supervised[-1][1], k) for k in POLICY_KEYS] == [4, 2.0, None, 2.5], "the command line wins"
    assert len(supervised) == 3


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("max_restarts_per_hour", 0, "max_restarts_per_hour=0 must be an int >= 1, or None for no limit"),
        ("max_restarts_per_hour", -2, "max_restarts_per_hour=-2 must be an int >= 1, or None for no limit"),
        ("max_restarts_per_hour", 1.5, "max_restarts_per_hour=1.5 must be an int >= 1, or None for no limit"),
        ("max_restarts_per_hour", True, "max_restarts_per_hour=True must be an int >= 1, or None for no limit"),
        ("max_restarts_per_hour", "many", "max_restarts_per_hour='many' must be an int >= 1, or None for no limit"),
        ("stop_grace_s", 0, "stop_grace_s=0 must be a number of seconds > 0"),
        ("stop_grace_s", -1.0, "stop_grace_s=-1.0 must be a number of seconds > 0"),
        ("stop_grace_s", None, "stop_grace_s=None must be a number of seconds > 0"),
        ("stop_grace_s", math.inf, "stop_grace_s=inf must be a number of seconds > 0"),
        ("stop_grace_s", math.nan, "stop_grace_s=nan must be a number of seconds > 0"),
        ("stop_grace_s", "soon", "stop_grace_s='soon' must be a number of seconds > 0"),
    ],
)
def test_bad_restart_options_are_refused_before_anything_runs(synthetic_data, tmp_path, supervised, key, value, says):
    with pytest.raises(OptionError) as e:
        yolo_rdna1.train(data=str(synthetic_data), supervise=True, project=str(tmp_path), **{key: value})
    assert str(e.value) == says
    assert supervised == []


def test_a_bad_restart_option_on_the_command_line_is_one_line_and_exit_2(synthetic_data, tmp_path, supervised, capsys):
    assert main(["train", f"data={synthetic_data}", "supervise=True", "stop_grace_s=0", f"project={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip() == "yolo-rdna1 train: stop_grace_s=0 must be a number of seconds > 0"
    assert supervised == []


def test_a_recipe_may_hold_every_restart_option_and_nothing_else_new(tmp_path):
    from yolo_rdna1.recipes import load_recipe

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(dict.fromkeys(POLICY_KEYS, 1)))
    assert load_recipe(good) == dict.fromkeys(POLICY_KEYS, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stop_grace": 1}))
    with pytest.raises(OptionError, match=r"unknown key\(s\) \['stop_grace'\]"):
        load_recipe(bad)
