"""CLI errors: one line on stderr saying what to do, no traceback, exit 2 (input), 1 (failure), 130 (Ctrl-C).

And the commands that need no torch do not import it.
"""

import json
import os
import subprocess
import sys

import pytest

from yolo_rdna1 import cli
from yolo_rdna1.guard import GuardConfigError
from yolo_rdna1.supervision.checkpoint import ResumeError
from yolo_rdna1.supervision.supervisor import SupervisorGaveUp


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "yolo_rdna1.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "YOLO_RDNA1_DEBUG": ""},
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    "args, code, says",
    [
        (
            ["train", "data=missing.yaml"],
            2,
            "yolo-rdna1 train: data=missing.yaml: 'missing.yaml' does not exist; pass data=<a dataset YAML",
        ),
        (
            ["train", "data={data}", "epochs=abc"],
            2,
            "yolo-rdna1 train: 'epochs=abc' is of invalid type str. 'epochs' must be an int",
        ),
        (["probe", "imgsz=-5"], 2, "yolo-rdna1 probe: imgsz=-5 must be a whole number of at least 1"),
        (
            ["train", "data={data}", "supervise=True", "resume=True", "project={tmp}", "name=never-ran"],
            2,
            "yolo-rdna1 train: resume=True but {tmp}/never-ran does not exist: nothing to resume",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(synthetic_data, tmp_path, args, code, says):
    fill = {"data": synthetic_data, "tmp": tmp_path}
    r = run_cli(*(a.format(**fill) for a in args), cwd=tmp_path)
    assert r.returncode == code and one_line(r.stderr).startswith(says.format(**fill))
    assert not (tmp_path / "runs").exists() and "probing" not in r.stderr + r.stdout, "it failed before any work"


def _raising(exc):
    def command(tokens):
        raise exc

    return command


@pytest.mark.parametrize(
    "exc, code, says",
    [
        (
            GuardConfigError("unknown guard policy 'fast'; valid policies: off, vendor, bypass, auto"),
            2,
            "yolo-rdna1 train: unknown guard policy 'fast'; valid policies: off, vendor, bypass, auto",
        ),
        (
            ResumeError(
                "resume=True but runs/x finished training (last.pt): "
                "nothing to resume; start a new run with another name="
            ),
            2,
            "yolo-rdna1 train: resume=True but runs/x finished training "
            "(last.pt): nothing to resume; start a new run with another name=",
        ),
        (
            SupervisorGaveUp("training failed 11 times (last cause 'hang'); max_restarts=10 reached"),
            1,
            "yolo-rdna1 train: training failed 11 times (last cause 'hang'); max_restarts=10 reached",
        ),
        (
            KeyboardInterrupt(),
            130,
            "yolo-rdna1 train: interrupted; the same command with resume=True continues the training",
        ),
        (
            RuntimeError("HIP error: an illegal memory access\nmore detail"),
            1,
            "yolo-rdna1 train: failed: RuntimeError: HIP error: an illegal "
            "memory access more detail (YOLO_RDNA1_DEBUG=1 shows where)",
        ),
    ],
)
def test_plugin_errors_ctrl_c_and_failures_print_one_line_with_their_exit_code(monkeypatch, capsys, exc, code, says):
    monkeypatch.setitem(cli.COMMANDS, "train", _raising(exc))
    monkeypatch.delenv("YOLO_RDNA1_DEBUG", raising=False)
    assert cli.main(["train", "data=x.yaml"]) == code
    err = capsys.readouterr().err
    assert one_line(err).startswith(says)


def test_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "report", _raising(RuntimeError("boom")))
    monkeypatch.setenv("YOLO_RDNA1_DEBUG", "1")
    assert cli.main(["report", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith(
        "yolo-rdna1 report: failed: RuntimeError: boom (YOLO_RDNA1_DEBUG=1 shows where)"
    )


def test_ultralytics_own_argument_errors_are_input_errors(synthetic_data, tmp_path, capsys):
    """An error from Ultralytics' own checks deep in a command (a model YAML it cannot find) is bad input too."""
    assert cli.main(["train", f"data={synthetic_data}", "model=yolov8q.yaml", f"project={tmp_path}", "device=cpu"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "yolo-rdna1 train: 'yolov8q.yaml' does not exist; fix that argument and run again"
    )


_NO_TORCH = """
import json, sys
from yolo_rdna1.cli import main
codes = [main(a) for a in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules, "ultralytics": "ultralytics" in sys.modules}))
"""


def test_data_report_and_verdicts_commands_do_not_import_torch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "rdna1_report.json").write_text(
        json.dumps(
            {
                "calls": 10,
                "bypassed": 4,
                "bypass_rate": 0.4,
                "fallbacks": 0,
                "thermal_pause_s": 0.0,
                "policy": "auto",
                "env_profile": "default",
                "signatures": [{"signature": "k", "routes": {"fwd": "bypass"}, "calls": 10, "bypassed": 4}],
            }
        )
    )
    (run / "results.csv").write_text("epoch,rdna1/bypass_rate\n1,0.4\n")
    commands = [
        ["data", "sample", f"dst={tmp_path / 'sample'}", "months=1", "clips_per_day=1", "frames_per_clip=2"],
        ["data", "convert-ltdv2", f"src={tmp_path / 'sample'}", f"dst={tmp_path / 'yolo'}"],
        ["data", "check", f"data={tmp_path / 'yolo' / 'data.yaml'}"],
        ["report", str(run)],
        ["verdicts", "list", f"cache={tmp_path / 'cache'}"],
    ]
    r = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0, 0], "torch": False, "ultralytics": False}
    assert (run / "rdna1.png").is_file() and (tmp_path / "yolo" / "data.yaml").is_file()
