"""Parsing and matching of fault profiles, exactly as shared/fault-profile-format.md says."""

import pytest
import yaml

from yolo_rdna1.faults import (
    FaultProfile,
    FaultProfileError,
    load_profile,
    parse_profile,
    profile_from_env,
    shipped_profiles,
)
from yolo_rdna1.signature import ConvSignature


def sig(**kw):
    base = dict(
        in_channels=16,
        out_channels=32,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        dilation=(1, 1),
        groups=1,
        height=48,
        width=48,
        batch=4,
    )
    base.update(kw)
    return ConvSignature(**base)


def rules(*raw):
    return parse_profile({"name": "t", "rules": list(raw)})


def test_match_exact_pair_range_and_list():
    p = rules({"match": {"kernel": [3, 3], "hw": {"min": 43}, "groups": [1, 2, 4]}, "effect": "hang"})
    assert p.rules_for(sig())
    assert not p.rules_for(sig(height=42, width=42))
    assert not p.rules_for(sig(kernel=(1, 1)))
    assert not p.rules_for(sig(groups=8))


def test_int_matches_both_dims_and_bool_dtype_keys():
    p = rules({"match": {"stride": 2, "dtype": "float16", "transposed": False}, "effect": "nan"})
    assert p.rules_for(sig(stride=(2, 2), dtype="float16"))
    assert not p.rules_for(sig(stride=(2, 1), dtype="float16"))
    assert not p.rules_for(sig(stride=(2, 2), dtype="float32"))


def test_direction_filters_and_any_matches_all():
    p = rules({"match": {}, "direction": "bwd_weight", "effect": "abort"}, {"match": {"kernel": 1}, "effect": "error"})
    assert [r.effect for r in p.rules_for(sig(direction="bwd_weight"))] == ["abort"]
    assert p.rules_for(sig(direction="fwd")) == ()
    assert [r.effect for r in p.rules_for(sig(kernel=(1, 1), padding=(0, 0), direction="bwd_data"))] == ["error"]


def test_first_matching_rule_applies_and_after_counts_calls():
    p = rules({"match": {"kernel": 3}, "effect": "hang", "after": 2}, {"match": {}, "effect": "error"})
    cands = p.rules_for(sig())
    # Calls 1 and 2 are below the hang rule's 'after': they fall through to the error rule.
    assert [FaultProfile.fire(cands).effect for _ in range(3)] == ["error", "error", "hang"]


def test_unless_env_turns_a_rule_off_only_when_every_variable_matches():
    p = rules({"match": {}, "effect": "abort", "unless_env": {"MIOPEN_DEBUG_CONV_GEMM": "0", "X": "1"}})
    assert p.rules_for(sig(), environ={"MIOPEN_DEBUG_CONV_GEMM": "0"})
    assert not p.rules_for(sig(), environ={"MIOPEN_DEBUG_CONV_GEMM": "0", "X": "1"})


def test_error_message_default_and_custom():
    p = rules(
        {"match": {}, "effect": "error"}, {"match": {}, "effect": "error", "message": "miopenStatusInternalError"}
    )
    assert [r.message for r in p.rules] == ["miopenStatusUnknownError", "miopenStatusInternalError"]


@pytest.mark.parametrize(
    "raw, needle",
    [
        (
            {"name": "x", "rules": [{"match": {}, "effect": "explode"}]},
            "unknown effect 'explode'; valid effects: error, hang, abort, nan, wrong",
        ),
        ({"name": "x", "rules": [{"match": {}, "effect": "hang", "direction": "up"}]}, "unknown direction 'up'"),
        (
            {"name": "x", "rules": [{"match": {"colour": 3}, "effect": "hang"}]},
            "unknown match key 'colour'; valid keys:",
        ),
        ({"name": "x", "rules": [{"match": {"hw": {"min": 50, "max": 40}}, "effect": "hang"}]}, "empty range"),
        (
            {"name": "x", "rules": [{"match": {"hw": {"least": 3}}, "effect": "hang"}]},
            "a range takes 'min' and/or 'max'",
        ),
        ({"name": "x", "rules": [{"match": {}, "effect": "hang", "oops": 1}]}, "unknown key(s) ['oops']"),
        ({"name": "x", "rules": [{"match": {}, "effect": "hang", "after": -1}]}, "'after' must be an int >= 0"),
        ({"name": "x", "rules": [{"match": {"dtype": "float8"}, "effect": "nan"}]}, "unknown dtype 'float8'"),
        ({"name": "x", "rulez": []}, "unknown top-level key(s) ['rulez']"),
        ({"name": "x", "rules": {}}, "'rules' must be a list"),
    ],
)
def test_malformed_profiles_name_the_problem_and_the_choices(raw, needle):
    with pytest.raises(FaultProfileError) as info:
        parse_profile(raw, "p.yaml")
    assert needle in str(info.value)
    assert "rule" in str(info.value) or "p.yaml" in str(info.value)


def test_unknown_profile_name_lists_shipped_profiles():
    with pytest.raises(FaultProfileError, match="shipped fault profiles: .*gfx1010"):
        load_profile("gfx9999")


def test_invalid_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("rules: [\n")
    with pytest.raises(FaultProfileError, match="not valid YAML"):
        load_profile(f)


def test_env_var_unset_or_empty_means_no_simulation(tmp_path):
    assert profile_from_env({}) is None
    assert profile_from_env({"YOLO_RDNA1_FAULTS": " "}) is None
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"name": "mine", "rules": [{"match": {"kernel": 1}, "effect": "nan"}]}))
    assert profile_from_env({"YOLO_RDNA1_FAULTS": str(f)}).name == "mine"
    assert profile_from_env({"YOLO_RDNA1_FAULTS": "gfx1010"}).name == "gfx1010"


def test_shipped_gfx1010_models_the_documented_failures():
    assert "gfx1010" in shipped_profiles()
    p = load_profile("gfx1010")
    effects = {r.effect for r in p.rules}
    assert effects == {"hang", "error", "abort", "nan", "wrong"}
    # 3x3 convs above 42 px hang in forward; at 42 px they do not.
    assert [r.effect for r in p.rules_for(sig(height=48, width=48), environ={})] == ["hang"]
    assert p.rules_for(sig(height=42, width=42), environ={}) == ()
    # some backward-weight convs abort, unless GEMM solvers are off
    wide = sig(
        in_channels=256, out_channels=128, kernel=(1, 1), padding=(0, 0), height=20, width=20, direction="bwd_weight"
    )
    assert [r.effect for r in p.rules_for(wide, environ={})] == ["abort"]
    assert p.rules_for(wide, environ={"MIOPEN_DEBUG_CONV_GEMM": "0"}) == ()
    # fp16 gives NaN
    assert [r.effect for r in p.rules_for(sig(kernel=(1, 1), dtype="float16"), environ={})] == ["nan"]
