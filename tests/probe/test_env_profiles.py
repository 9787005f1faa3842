"""MIOpen env profiles: the probe tries each and picks the one with the most conv work ok."""

import pytest
import torch.nn as nn
import yaml

from yolo_rdna1.probe.api import probe
from yolo_rdna1.probe.envprofiles import EnvProfileError, load_env_profile, shipped_env_profiles
from yolo_rdna1.verdicts import VerdictStore


def test_shipped_profiles_load_and_bad_names_are_named(tmp_path):
    assert {"default", "no_gemm", "implicit_gemm", "direct_only", "no_winograd"} <= set(shipped_env_profiles())
    assert load_env_profile("no_gemm").env == {"MIOPEN_DEBUG_CONV_GEMM": "0"}
    with pytest.raises(
        EnvProfileError, match="unknown MIOpen env profile 'fast'; shipped MIOpen env profiles: default, "
    ):
        load_env_profile("fast")
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nenvs: {}\n")
    with pytest.raises(EnvProfileError, match=r"unknown key\(s\) \['envs'\]"):
        load_env_profile(bad)


@pytest.mark.parametrize(
    "env, pattern",
    [
        ({"PYTHONPATH": "/tmp/evil"}, "may not set 'PYTHONPATH'"),
        ({"LD_PRELOAD": "/tmp/evil.so"}, "may not set 'LD_PRELOAD'"),
        ({"PATH": "/tmp"}, "may not set 'PATH'"),
        ({"MIOPEN_DEBUG_CONV_GEMM": "0", "LD_LIBRARY_PATH": "/tmp"}, "may not set 'LD_LIBRARY_PATH'"),
        ({"miopen_debug_conv_gemm": "0"}, "may not set 'miopen_debug_conv_gemm'"),
        ({"MIOPEN_DEBUG_CONV_GEMM": ["0"]}, "MIOPEN_DEBUG_CONV_GEMM must be a string or a number"),
        ({"MIOPEN_DEBUG_CONV_GEMM": {"a": 1}}, "must be a string or a number"),
        ({"MIOPEN_DEBUG_CONV_GEMM": True}, "must be a string or a number"),
        ({"HIP_VISIBLE_DEVICES": "0\nexport LD_PRELOAD=/tmp/evil.so"}, "HIP_VISIBLE_DEVICES holds a control character"),
    ],
)
def test_defect4_env_profile_may_set_only_gpu_stack_variables(tmp_path, env, pattern):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "env": env}))
    with pytest.raises(EnvProfileError, match=pattern) as info:
        load_env_profile(path)
    assert "\n" not in str(info.value)
    if "may not set" in pattern:
        assert "MIOPEN_, HIP_, HSA_, ROCR_, AMD_, HCC_, GPU_, PYTORCH_" in str(info.value)


def test_env_profile_of_ones_own_sets_gpu_variables_under_its_own_name(tmp_path):
    path = tmp_path / "mine.yaml"
    env = {
        "MIOPEN_FIND_MODE": 1,
        "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
        "PYTORCH_HIP_ALLOC_CONF": "expandable_segments:True",
        "GPU_MAX_HW_QUEUES": 2.0,
        "AMD_LOG_LEVEL": "0",
        "ROCR_VISIBLE_DEVICES": "0",
        "HIP_FORCE_DEV_KERNARG": "1",
        "HCC_AMDGPU_TARGET": "gfx1010",
    }
    path.write_text(yaml.safe_dump({"name": "mine", "env": env, "description": "mine"}))
    assert load_env_profile(path).env == {k: str(v) for k, v in env.items()}
    for name in ("no_gemm", "bad name", "x" * 65):  # verdicts are stored per profile name
        path.write_text(yaml.safe_dump({"name": name, "env": {}}))
        with pytest.raises(EnvProfileError, match="name"):
            load_env_profile(path)
    for shipped in shipped_env_profiles():
        assert load_env_profile(shipped).name == shipped  # every shipped profile passes its own allow-list


def test_auto_picks_the_profile_under_which_most_flops_are_ok(tmp_path, monkeypatch):
    prof = tmp_path / "f.yaml"
    prof.write_text(
        yaml.safe_dump(
            {
                "name": "gemm-bug",
                "rules": [
                    # the big conv aborts unless GEMM solvers are off; a small one is wrong unless Winograd is off
                    {
                        "match": {"in_channels": 8},
                        "direction": "bwd_weight",
                        "effect": "abort",
                        "unless_env": {"MIOPEN_DEBUG_CONV_GEMM": "0"},
                    },
                    {
                        "match": {"in_channels": 3},
                        "direction": "fwd",
                        "effect": "wrong",
                        "unless_env": {"MIOPEN_DEBUG_CONV_WINOGRAD": "0"},
                    },
                ],
            }
        )
    )
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", str(prof))
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 32, 3, padding=1))
    report = probe(
        net, imgsz=32, batch=2, env_profile="auto", store=VerdictStore(tmp_path / "v.sqlite"), progress=False
    )
    scores = report.profile_scores
    assert scores["default"] < scores["no_gemm"] and scores["default"] < scores["no_winograd"]
    # GEMM off fixes the big conv (most FLOPs); implicit_gemm and direct_only turn both off
    assert scores["implicit_gemm"] == scores["direct_only"] == 1.0
    assert report.env_profile in ("direct_only", "implicit_gemm")
    assert all(v.verdict == "ok" for v in report.verdicts)
