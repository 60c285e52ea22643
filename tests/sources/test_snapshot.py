from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sources.snapshot import (
    FIELDS,
    SCENARIOS,
    Snapshot,
    SnapshotError,
    live,
    load_file,
    parse_json,
    scenario,
)


def base() -> dict[str, Any]:
    return {**SCENARIOS["healthy"], "host": "web-1", "cpu_count": 4, "timestamp": 1.0}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_is_valid_and_round_trips(name: str) -> None:
    snap = scenario(name)
    assert snap.source == f"scenario:{name}"
    again = Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert again == snap


def test_scenarios_have_distinct_keys() -> None:
    keys = {scenario(n).cache_key() for n in SCENARIOS}
    assert len(keys) == len(SCENARIOS)


def test_cache_key_ignores_timestamp_and_host_and_noise_below_the_quantum() -> None:
    a = Snapshot.from_dict(base())
    b = Snapshot.from_dict({**base(), "host": "web-2", "timestamp": 999.0, "cpu_util_pct": 23.4})
    c = Snapshot.from_dict({**base(), "cpu_util_pct": 24.0})
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != c.cache_key()


def test_quantum_is_configurable() -> None:
    a = Snapshot.from_dict({**base(), "cpu_util_pct": 21})
    b = Snapshot.from_dict({**base(), "cpu_util_pct": 24})
    assert a.cache_key() != b.cache_key()
    assert a.cache_key({"cpu_util_pct": 10}) == b.cache_key({"cpu_util_pct": 10})


def test_quantise_rounds_half_up_and_prints_cleanly() -> None:
    snap = Snapshot.from_dict({**base(), "cpu_util_pct": 22.5, "cpu_load_per_core": 0.25})
    q = snap.quantised()
    assert q["cpu_util_pct"] == 23 and q["cpu_load_per_core"] == 0.3


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"cpu_util_pct": "high"}, "cpu_util_pct", "must be a number"),
        ({"cpu_util_pct": 140}, "cpu_util_pct", "≤ 100"),
        ({"mem_util_pct": -1}, "mem_util_pct", "≥ 0"),
        ({"disk_queue_depth": True}, "disk_queue_depth", "must be a number"),
        ({"disk_util_pct": None}, "disk_util_pct", "is required"),
        ({"cpu_count": 0}, "cpu_count", "≥ 1"),
        ({"host": ""}, "host", "non-empty"),
        ({"cpu_utilisation": 3}, "cpu_utilisation", "unknown field"),
    ],
)
def test_field_level_errors(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SnapshotError) as err:
        Snapshot.from_dict({**base(), **change})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ") and words in str(err.value)


def test_optional_service_fields_may_be_absent() -> None:
    data = {k: v for k, v in base().items() if k not in ("p95_latency_ms", "error_rate_pct")}
    snap = Snapshot.from_dict(data)
    assert snap.p95_latency_ms is None and snap.quantised()["error_rate_pct"] is None


def test_not_an_object_and_bad_json() -> None:
    with pytest.raises(SnapshotError, match="snapshot: must be a JSON object"):
        parse_json("[1, 2]")
    with pytest.raises(SnapshotError, match=r"file: not valid JSON \(line 1"):
        parse_json("{nope")
    with pytest.raises(SnapshotError, match="file: not UTF-8 text"):
        parse_json(b"\xff\xfe")


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(base()))
    assert load_file(path).source == "file:snap.json"
    with pytest.raises(SnapshotError, match="file: cannot read"):
        load_file(tmp_path / "missing.json")


def test_unknown_scenario() -> None:
    with pytest.raises(SnapshotError, match="scenario: unknown scenario 'nope'"):
        scenario("nope")


def test_live_snapshot_from_this_host_is_valid() -> None:
    snap = live(interval_s=0.05)
    assert snap.source == "live" and snap.cpu_count >= 1
    for spec in FIELDS:
        value = getattr(snap, spec.name)
        assert value is None or value >= 0


# --- property-based: whatever the bytes, a Snapshot or one SnapshotError line ---------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    [f.name for f in FIELDS] + ["host", "timestamp", "cpu_count", "source"]
)


def one_line_rejection(data: str | bytes) -> None:
    try:
        parse_json(data)
    except SnapshotError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{exc.field}: ")
        assert len(str(exc)) <= 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_snapshot_or_one_line(data: bytes) -> None:
    one_line_rejection(data)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_document_gives_a_snapshot_or_one_line(value: Any) -> None:
    one_line_rejection(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8))
def test_any_value_in_any_known_field_gives_a_snapshot_or_one_line(change: dict[str, Any]) -> None:
    one_line_rejection(json.dumps({**base(), **change}))


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {f.name: st.floats(min_value=f.minimum, max_value=f.maximum or 1e12) for f in FIELDS}
    )
)
def test_every_in_range_snapshot_is_accepted_and_round_trips(values: dict[str, float]) -> None:
    snap = parse_json(json.dumps({**values, "host": "h", "timestamp": 1.0}).encode())
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
