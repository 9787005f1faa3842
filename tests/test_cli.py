"""The yolo-rdna1 command: key=value parsing, clear messages, verdict management."""

import json
import subprocess
import sys

import pytest

from yolo_rdna1.cli import main, parse_kv
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore


def cli(*args, env=None, cwd=None):
    import os

    return subprocess.run([sys.executable, "-m", "yolo_rdna1.cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300, cwd=cwd)


def test_parse_kv_reads_yaml_scalars():
    assert parse_kv(["epochs=3", "amp=False", "name=run1", "imgsz=640", "device=0,1"]) == {
        "epochs": 3, "amp": False, "name": "run1", "imgsz": 640, "device": "0,1"}


def test_bad_command_lines_give_one_message_and_exit_2(tmp_path):
    r = cli("fly")
    assert r.returncode == 2 and "unknown command 'fly'; valid: demo, train, probe, verdicts, report, doctor" in r.stderr
    r = cli("probe", "modle=yolov8n.yaml")
    assert r.returncode == 2 and "unknown argument(s) ['modle']" in r.stderr and "Traceback" not in r.stderr
    r = cli("probe", f"model={tmp_path / 'missing.pt'}", f"cache={tmp_path}")
    assert r.returncode == 2 and "missing.pt not found" in r.stderr and "Traceback" not in r.stderr
    r = cli("train", "data=x.yaml", "guard=fast")
    assert r.returncode == 2 and "guard='fast' is not a policy" in r.stderr
    r = cli("demo", "epochz=3")
    assert r.returncode == 2 and "unknown argument(s) ['epochz']" in r.stderr


def test_verdicts_list_export_import_clear_miopen(tmp_path, capsys):
    store = VerdictStore(tmp_path / "a" / "verdicts.sqlite")
    sig = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
    store.put([Verdict("cardA", "default", sig.key(), "hang", "no return"), Verdict("cardA", "default", sig.with_direction("bwd_data").key(), "ok")])
    assert main(["verdicts", "list", f"cache={tmp_path / 'a'}"]) == 0
    assert "2 verdicts" in capsys.readouterr().out
    out = tmp_path / "v.json"
    assert main(["verdicts", "export", f"cache={tmp_path / 'a'}", f"file={out}"]) == 0
    assert len(json.loads(out.read_text())["verdicts"]) == 2
    assert main(["verdicts", "import", f"cache={tmp_path / 'b'}", f"file={out}"]) == 0
    assert main(["verdicts", "miopen", f"cache={tmp_path / 'b'}"]) == 0
    text = capsys.readouterr().out
    assert "MIOpenDriver conv -n 4 -c 16 -H 48 -W 48 -k 32" in text and "# 1 bad conv signatures" in text
    assert main(["verdicts", "clear", f"cache={tmp_path / 'b'}"]) == 0
    assert len(VerdictStore(tmp_path / "b" / "verdicts.sqlite").query()) == 0


@pytest.mark.slow
def test_demo_trains_guarded_and_says_how_many_convs_it_bypassed(tmp_path):
    import re

    (tmp_path / "tmp").mkdir()
    r = cli("demo", "epochs=1", "imgsz=64", "batch=4", "n_train=8", "n_val=4", f"project={tmp_path}", cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in (tmp_path / "tmp").iterdir() if "probe" in p.name] == [], "every probe removed its temp folders"
    m = re.search(r"yolo_rdna1 demo: (\d+) of (\d+) conv calls in training and validation were bypassed \((\d+) of (\d+) conv signatures\)", r.stdout)
    assert m, r.stdout[-2000:]
    bypassed, calls, sigs_bypassed, sigs = map(int, m.groups())
    assert 0 < bypassed < calls and 0 < sigs_bypassed <= sigs
    assert "probe: 1" in r.stdout and (tmp_path / "demo" / "rdna1_report.json").is_file()
