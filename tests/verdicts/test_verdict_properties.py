"""Property tests (issue 16): whatever a verdict file or a signature key holds, the outcome is a
clean import or one clear refusal (an Rdna1Error), never another exception, never half an import,
and never a bad verdict of this machine turned ``ok``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from yolo_rdna1.errors import Rdna1Error
from yolo_rdna1.signature import ConvSignature, SignatureError
from yolo_rdna1.verdicts import Verdict, VerdictStore, VerdictStoreError
from yolo_rdna1.verdicts.store import _COLUMNS
from yolo_rdna1.verdicts.table import route_of

SIG = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
KEYS = [SIG.with_direction(d).key() for d in ("fwd", "bwd_data", "bwd_weight")]
FIELDS = [*_COLUMNS, "extra"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from([*KEYS, "ok", "hang", "import", "cardA"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def valid_entry(i: int, verdict: str) -> dict:
    return {
        "device": "cardA",
        "env_profile": "default",
        "signature": KEYS[i % 3],
        "verdict": verdict,
        "detail": "",
        "vendor_ms": 1.0,
        "bypass_ms": 2.0,
        "algorithm": None,
        "source": "probe",
        "updated": 1.7e9,
        "origin": "",
    }


# each entry: a valid one with a field set to random JSON (or removed), or any JSON value;
# valid-looking entries and versions are drawn more often, so that imports also succeed
changed_entry = st.builds(
    lambda i, verdict, changes: {
        **{k: v for k, v in valid_entry(i, verdict).items() if (k, None) not in changes},
        **{k: v for k, v in changes if v is not None},
    },
    st.integers(0, 2),
    st.sampled_from(["ok", "hang", "nan"]),
    st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.none()), max_size=1),
)
entries = st.lists(st.integers(0, 5).flatmap(lambda n: json_values if n == 0 else changed_entry), max_size=4)
document = st.builds(
    lambda e, version, extra: {"format": "yolo_rdna1.verdicts", "schema_version": version, "verdicts": e, **extra},
    entries,
    st.integers(0, 9).map(lambda n: [3, "2", True][n] if n < 3 else 1 + n % 2),
    st.integers(0, 5).flatmap(
        lambda n: (
            st.just({}) if n else st.dictionaries(st.sampled_from(["exported_by", "other"]), json_values, max_size=1)
        )
    ),
)
documents = st.integers(0, 5).flatmap(lambda n: json_values if n == 0 else document)


def snapshot(store: VerdictStore) -> list[tuple]:
    return [tuple(getattr(v, c) for c in _COLUMNS) for v in store.query()]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, replace=st.booleans())
def test_a_verdict_file_is_imported_cleanly_or_refused_as_a_whole(doc, replace):
    with tempfile.TemporaryDirectory() as tmp:
        store = VerdictStore(Path(tmp) / "v.sqlite")
        store.put(
            [
                Verdict("cardA", "default", KEYS[0], "abort", source="crash"),
                Verdict("cardA", "default", KEYS[1], "ok", source="probe"),
            ]
        )
        before = snapshot(store)
        path = Path(tmp) / "shared.json"
        path.write_text(json.dumps(doc))  # NaN and Infinity included, as json writes them
        try:
            report = store.import_json(path, replace=replace)
        except VerdictStoreError as e:
            event("refused")
            assert "\n" not in str(e)
            assert snapshot(store) == before, "a refused import changed the store"
            return
        finally:
            store.close()
        event(f"imported, {report.written} written")
        store = VerdictStore(Path(tmp) / "v.sqlite")
        after = store.table("cardA", "default")
        assert store.skipped == 0, "an import stored a row that cannot be read back"
        assert all(route_of(v) in ("vendor", "bypass") for v in store.query())
        assert report.written <= len(doc["verdicts"])
        if not replace:
            assert after[KEYS[0]].verdict == "abort" and after[KEYS[0]].source == "crash", "an import lowered safety"
        store.close()


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda key, i, text: ":".join(key.split(":")[:i] + [text] + key.split(":")[i + 1 :]),
            st.sampled_from(KEYS),
            st.integers(0, 11),
            st.text(max_size=12),
        ),
    )
)
def test_from_key_parses_or_refuses_clearly(text):
    try:
        sig = ConvSignature.from_key(text)
    except SignatureError as e:
        assert isinstance(e, Rdna1Error) and "\n" not in str(e)
        return
    assert sig.key() == text and text.isprintable() and sig.in_channels > 0 and sig.batch > 0
