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

    return subprocess.run(
        [sys.executable, "-m", "yolo_rdna1.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        cwd=cwd,
    )


def test_parse_kv_reads_yaml_scalars():
    assert parse_kv(["epochs=3", "amp=False", "name=run1", "imgsz=640", "device=0,1"]) == {
        "epochs": 3,
        "amp": False,
        "name": "run1",
        "imgsz": 640,
        "device": "0,1",
    }


def test_bad_command_lines_give_one_message_and_exit_2(tmp_path):
    r = cli("fly")
    assert (
        r.returncode == 2 and "unknown command 'fly'; valid: demo, train, probe, verdicts, report, doctor" in r.stderr
    )
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
    store.put(
        [
            Verdict("cardA", "default", sig.key(), "hang", "no return"),
            Verdict("cardA", "default", sig.with_direction("bwd_data").key(), "ok"),
        ]
    )
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
    r = cli(
        "demo",
        "epochs=1",
        "imgsz=64",
        "batch=4",
        "n_train=8",
        "n_val=4",
        f"project={tmp_path}",
        cwd=tmp_path,
        env={"TMPDIR": str(tmp_path / "tmp")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in (tmp_path / "tmp").iterdir() if "probe" in p.name] == [], (
        "every probe removed its temp folders"
    )
    m = re.search(
        r"yolo_rdna1 demo: (\d+) of (\d+) conv calls in training and "
        r"validation were bypassed \((\d+) of (\d+) conv signatures\)",
        r.stdout,
    )
    assert m, r.stdout[-2000:]
    bypassed, calls, sigs_bypassed, sigs = map(int, m.groups())
    assert 0 < bypassed < calls and 0 < sigs_bypassed <= sigs
    assert "probe: 1" in r.stdout and (tmp_path / "demo" / "rdna1_report.json").is_file()


HOSTILE = "boom\nrm -rf ~/important\r\x1b[2J\x1b]0;title\x07\u2028echo pwned\u202e"


def _hostile_export(path):
    sig = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
    entries = [
        {
            "device": "cardA",
            "env_profile": "default",
            "signature": sig.with_direction(d).key(),
            "verdict": "hang",
            "detail": HOSTILE,
        }
        for d in ("fwd", "bwd_data")
    ]
    path.write_text(json.dumps({"format": "yolo_rdna1.verdicts", "schema_version": 1, "verdicts": entries}))
    return path


def test_defect2_verdicts_miopen_prints_only_comments_and_driver_lines(tmp_path, capsys):
    import re

    assert main(["verdicts", "import", f"cache={tmp_path}", f"file={_hostile_export(tmp_path / 'v.json')}"]) == 0
    capsys.readouterr()
    assert main(["verdicts", "miopen", f"cache={tmp_path}"]) == 0
    out = capsys.readouterr().out
    driver = re.compile(
        r"MIOpenDriver (conv|convfp16|convbfp16)( -[a-zA-Z] \d+)+ -m (conv|trans)( -[a-zA-Z] \d+)+( --\w+ NHWC)*"
    )
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 6, out
    assert all(line.startswith("# ") or driver.fullmatch(line) for line in lines[:-1]), out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u2028\u202e]", out)
    assert (
        "# hang (import) on cardA [default]: boom\\nrm -rf ~/important\\r\\x1b[2J" in out
        and "# 2 bad conv signatures" in out
    )


def test_defect3_verdicts_list_and_import_escape_what_they_print(tmp_path, capsys):
    import re

    evil = tmp_path / "v\x1b[31m.json"
    assert main(["verdicts", "import", f"cache={tmp_path}", f"file={_hostile_export(evil)}"]) == 0
    assert main(["verdicts", "list", f"cache={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u2028\u202e]", out), out
    listed = [line for line in out.splitlines() if line.startswith("hang")]
    assert len(listed) == 2 and all(
        "boom\\nrm -rf" in line and "(import v\\x1b[31m.json (probe there))" in line for line in listed
    )
    assert (
        "imported " in out
        and "v\\x1b[31m.json into " in out
        and "cardA: 2 added, 0 replaced, 0 kept, 0 unchanged" in out
    )


def test_defect1_verdicts_import_says_what_it_kept_and_replace_is_explicit(tmp_path, capsys):
    sig = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
    VerdictStore(tmp_path / "verdicts.sqlite").put(
        Verdict("cardA", "default", sig.key(), "abort", "died", source="crash")
    )
    shared = tmp_path / "shared.json"
    shared.write_text(
        json.dumps(
            {
                "format": "yolo_rdna1.verdicts",
                "schema_version": 1,
                "verdicts": [{"device": "cardA", "env_profile": "default", "signature": sig.key(), "verdict": "ok"}],
            }
        )
    )
    assert main(["verdicts", "import", f"cache={tmp_path}", f"file={shared}"]) == 0
    out = capsys.readouterr().out
    assert (
        "cardA: 0 added, 0 replaced, 1 kept, 0 unchanged" in out
        and "kept 1: measured abort here beats the imported ok" in out
    )
    assert f"kept abort for {sig.key()} [default]" in out
    assert VerdictStore(tmp_path / "verdicts.sqlite").get("cardA", "default", sig.key()).verdict == "abort"
    assert main(["verdicts", "import", f"cache={tmp_path}", f"file={shared}", "replace=maybe"]) == 2
    assert "replace=maybe is not True or False" in capsys.readouterr().err
    assert main(["verdicts", "import", f"cache={tmp_path}", f"file={shared}", "replace=True"]) == 0
    assert VerdictStore(tmp_path / "verdicts.sqlite").get("cardA", "default", sig.key()).verdict == "ok"


def test_defect8_verdicts_miopen_survives_rows_that_are_not_verdicts(tmp_path, capsys):
    import sqlite3

    sig = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
    VerdictStore(tmp_path / "verdicts.sqlite").put(Verdict("cardA", "default", sig.key(), "hang", source="crash"))
    conn = sqlite3.connect(tmp_path / "verdicts.sqlite")  # what the old attribution stored from a damaged breadcrumb
    conn.executemany(
        "INSERT INTO verdicts (device, env_profile, signature, verdict, "
        "source, updated) VALUES ('cardA', 'default', ?, ?, 'crash', 0)",
        [("not a key\n; rm -rf ~", "abort"), (sig.with_direction("bwd_data").key(), "sad")],
    )
    conn.commit()
    conn.close()
    assert main(["verdicts", "miopen", f"cache={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "# 1 bad conv signatures; 2 stored rows left out (not valid verdicts)" in out and "rm -rf" not in out


def test_defect10_verdicts_import_into_a_newer_store_is_one_line_and_changes_nothing(tmp_path):
    import sqlite3

    VerdictStore(tmp_path / "verdicts.sqlite").close()
    conn = sqlite3.connect(tmp_path / "verdicts.sqlite")
    conn.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    r = cli("verdicts", "import", f"cache={tmp_path}", f"file={_hostile_export(tmp_path / 'v.json')}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        "verdicts: verdict store" in r.stderr
        and "newer yolo_rdna1 (verdict schema 7" in r.stderr
        and "nothing was imported" in r.stderr
    )
    assert sqlite3.connect(tmp_path / "verdicts.sqlite").execute("SELECT count(*) FROM verdicts").fetchone() == (0,)
