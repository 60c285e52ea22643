"""engine.report.compare: `Engine.compare`'s answer typed, its tables, `compare --json`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.records import CacheInfo
from engine.report.compare import COMPARE_STEPS, Comparison
from tests.support.results import agent, make_result


def test_comparison_reads_engine_compare_output() -> None:
    seq = make_result(mode="sequential", wall=12.0)
    par = make_result(wall=4.0)
    cached = replace(make_result(wall=0.003), cache=CacheInfo(hit=True, age_s=1.0))
    single = make_result(mode="single", wall=5.0)
    data = {
        "single": single.to_dict(),
        "sequential": seq.to_dict(),
        "parallel": par.to_dict(),
        "cached": cached.to_dict(),
        "speedup": 3.0,
    }
    comp = Comparison.from_dict(data)
    assert [r.run for r in comp.rows] == ["single", "sequential", "parallel", "cached"]
    assert comp.speedup == 3.0
    assert comp.ideal_speedup == pytest.approx(12.0 / par.critical_path_s)
    assert comp.rows[3].cache_hit and not comp.rows[2].cache_hit
    assert comp.rows[1].agents == "3/5"
    assert comp.runs["parallel"].execution_time_s == 4.0


def test_comparison_computes_the_speedup_when_missing() -> None:
    seq, par = make_result(mode="sequential", wall=9.0), make_result(wall=3.0)
    data = {"sequential": seq.to_dict(), "parallel": par.to_dict(), "speedup": None}
    assert Comparison.from_dict(data).speedup == pytest.approx(3.0)


def test_consolidation_rows_read_the_variants_in_table_order() -> None:
    full = make_result(consolidation_s=4.0)
    assert full.consolidation is not None
    full.consolidation.prompt_tokens, full.consolidation.cached_tokens = 1343, 271
    warm = make_result(consolidation_s=0.5)
    assert warm.consolidation is not None
    warm.consolidation.prompt_tokens, warm.consolidation.cached_tokens = 92, 620
    warmup = agent("Consolidator.warmup", 2.0, 0.4)
    warmup.prompt_tokens = 349
    warm.warmups = [warmup]
    data = {"compact_warm": warm.to_dict(), "full_cold": full.to_dict(), "speedup": 2.0}
    rows = Comparison.from_dict(data).consolidation_rows
    assert [r.key for r in rows] == ["full_cold", "compact_warm"]  # compact_cold absent
    assert rows[0].label == "full, no warm-up (before)" and rows[0].warmups == 0
    assert rows[0].after_last_agent_s == pytest.approx(4.5)
    assert (rows[0].evaluated_tokens, rows[0].cached_tokens) == (1343, 271)
    assert (rows[1].warmups, rows[1].warmup_evaluated_tokens) == (1, 349)
    assert rows[1].after_last_agent_s == pytest.approx(1.0) and rows[1].method == "llm"
    assert Comparison.from_dict({"single": full.to_dict()}).consolidation_rows == ()


def test_to_dict_is_compare_json_and_reads_back_byte_for_byte() -> None:
    # Engine.compare's runs in the order it makes them, then the speedup (docs/contract.md).
    walls = dict(zip(COMPARE_STEPS, (5.0, 12.0, 3.7, 0.003, 4.1, 3.9, 3.6), strict=True))
    runs = {name: make_result(wall=wall) for name, wall in walls.items()}
    comp = Comparison.of(runs)
    data = comp.to_dict()
    assert list(data) == [*COMPARE_STEPS, "speedup"]
    assert data["speedup"] == round(12.0 / 3.7, 3) == 3.243
    text = json.dumps(data, indent=2)
    assert json.dumps(Comparison.from_dict(json.loads(text)).to_dict(), indent=2) == text


def test_a_zero_second_parallel_run_has_no_speedup() -> None:
    runs = {"sequential": make_result(wall=2.0), "parallel": make_result(wall=0.0)}
    assert Comparison.of(runs).speedup is None
    assert Comparison.of(runs).to_dict()["speedup"] is None


def test_variants_are_the_consolidation_runs_in_table_order() -> None:
    data = {
        "compact_warm": make_result(wall=1.0).to_dict(),
        "parallel": make_result(wall=2.0).to_dict(),
        "full_cold": make_result(wall=3.0).to_dict(),
    }
    comp = Comparison.from_dict(data)
    assert list(comp.variants) == ["full_cold", "compact_warm"]
    assert [r.run for r in comp.rows] == ["parallel"]
