"""journal.jsonl: appended whole, read back whole, whatever a crash left in it."""

import json

from yolo_rdna1.supervision import journal


def test_defect12_an_event_after_a_torn_line_is_kept_and_the_torn_line_counted(tmp_path):
    path = tmp_path / journal.JOURNAL_FILE
    journal.append(tmp_path, "start")
    with open(path, "a") as f:
        f.write('{"time": 1.0, "event": "checkp')  # the writer was killed here
    journal.append(tmp_path, "restart", cause="killed")
    assert [e["event"] for e in journal.read(tmp_path)] == ["start", "restart"]
    assert journal.load(tmp_path).skipped == 1
    assert path.read_text().splitlines()[-1].startswith('{"time"'), "the new event starts a line of its own"


def test_defect12_an_event_glued_to_a_torn_line_by_an_older_writer_is_recovered(tmp_path):
    torn = '{"time": 1.0, "event": "checkpoint", "epo'
    whole = {"time": 2.0, "event": "restart", "cause": "abort"}
    (tmp_path / journal.JOURNAL_FILE).write_text(
        json.dumps({"time": 0.0, "event": "start"}) + "\n" + torn + json.dumps(whole) + "\n"
    )
    contents = journal.load(tmp_path)
    assert contents.events == [{"time": 0.0, "event": "start"}, whole] and contents.skipped == 1


def test_defect12_lines_without_a_string_event_are_skipped_and_counted(tmp_path):
    lines = ['{"time": 1}', '{"event": null}', "[1, 2]", "17", '"start"', '{"event": "start"}', "", "{]"]
    (tmp_path / journal.JOURNAL_FILE).write_text("\n".join(lines) + "\n")
    contents = journal.load(tmp_path)
    assert contents.events == [{"event": "start"}] and contents.skipped == 6, "blank lines are not counted"
    summary = journal.summarize(tmp_path)
    assert summary["skipped"] == 6 and summary["restarts"] == 0 and summary["ended"] is None
