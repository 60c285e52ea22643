"""The benchmark's rows, in report order: id → the function that measures it."""

from __future__ import annotations

from collections.abc import Callable

from bench import (
    row_api,
    row_bound,
    row_cache,
    row_concurrency,
    row_consolidation,
    row_dashboard,
    row_learn,
    row_memory,
    row_overhead,
    row_plan,
    row_realserver,
    row_replicas,
    row_speedup,
    row_stagger,
    row_tail,
)
from bench.levels import Level
from bench.measure import Row

ROWS: dict[str, Callable[[Level], Row]] = {
    "P1": row_overhead.run,
    "P2": row_speedup.run_p2,
    "P2b": row_speedup.run_p2b,
    "P3": row_cache.run,
    "P4": row_concurrency.run,
    "P5": row_tail.run,
    "P6": row_memory.run,
    "P7": row_plan.run,
    "P8": row_consolidation.run,
    "P9": row_stagger.run,
    "P10": row_learn.run,
    "P11": row_bound.run,
    "D1": row_dashboard.run,
    "R1": row_replicas.run,
    "R2": row_realserver.run,
    "A1": row_api.run,
}
