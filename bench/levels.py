"""How much each row measures: `full` (make bench), `quick` (< 1 min) and `smoke` (tests).

Time scales are chosen per row. The simulated server multiplies every duration by its
time scale; below ≈ 0.01 its own fixed per-request cost (≈ 3 ms, plus a few ms of
serialisation between concurrent requests on 2 cores) becomes a large part of a call,
so ratio rows use 0.02–0.05 and only rows about memory or the cache go smaller.
`quick` keeps the full run's scales where a ratio depends on them and cuts repeats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    name: str
    repeats: int  # comparisons (P2, P2b, P5, P7) per arm, after a warm-up run
    p1_ns: tuple[int, ...]
    p1_repeats: int
    p1_scale: float
    p2_scale: float
    p3_hits: int
    p3_repeats: int
    p3_steady_hits: int  # hits on a 3,000-line history: ≈ 13 ms each
    p4_scale: float
    p4_repeats: int
    p4_processes: int
    p5_scale: float
    p6_warmup: int
    p6_runs: int
    p6_scale: float
    p7_scale: float
    p7_profiles: tuple[str, ...]
    d1_reruns: int


LEVELS: dict[str, Level] = {
    "full": Level(
        name="full",
        repeats=5,
        p1_ns=(5, 10, 25, 50),
        p1_repeats=3,
        p1_scale=0.05,
        p2_scale=0.05,
        p3_hits=1000,
        p3_repeats=3,
        p3_steady_hits=1000,
        p4_scale=0.02,
        p4_repeats=5,
        p4_processes=5,
        p5_scale=0.05,
        p6_warmup=50,
        p6_runs=1000,
        p6_scale=0.0005,
        p7_scale=0.05,
        p7_profiles=("baseline", "gpu", "cpu-small", "baseline+slow"),
        d1_reruns=30,
    ),
    "quick": Level(
        name="quick",
        repeats=1,
        p1_ns=(5, 10, 25, 50),
        p1_repeats=1,
        p1_scale=0.02,
        p2_scale=0.02,
        p3_hits=500,
        p3_repeats=1,
        p3_steady_hits=150,
        p4_scale=0.02,
        p4_repeats=1,
        p4_processes=2,
        p5_scale=0.02,
        p6_warmup=20,
        p6_runs=120,
        p6_scale=0.0005,
        p7_scale=0.02,
        p7_profiles=("baseline", "gpu", "cpu-small", "baseline+slow"),
        d1_reruns=10,
    ),
    "smoke": Level(
        name="smoke",
        repeats=1,
        p1_ns=(5, 10),
        p1_repeats=1,
        p1_scale=0.01,
        p2_scale=0.01,
        p3_hits=100,
        p3_repeats=1,
        p3_steady_hits=20,
        p4_scale=0.01,
        p4_repeats=1,
        p4_processes=2,
        p5_scale=0.01,
        p6_warmup=5,
        p6_runs=20,
        p6_scale=0.0005,
        p7_scale=0.02,  # lower, the plan's fixed client cost outlasts its scaled timeout
        p7_profiles=("gpu",),
        d1_reruns=3,
    ),
}
