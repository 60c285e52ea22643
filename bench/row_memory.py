"""P6: 1,000 consecutive uncached runs: does memory or the cache directory grow?

The product's set-up: the simulated server embedded in the same process (as the
dashboard runs it), an Engine with a result cache, and every run on a distinct snapshot,
so each one misses, runs and stores. The cache gets a small size limit so that eviction
happens many times over. RSS is read (after `gc.collect()`, so garbage awaiting the
cyclic collector is not counted as growth) after the warm-up and then every 10 % of
the runs; the directory is measured on disk, every file counted (SQLite's WAL too).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from pathlib import Path

import psutil

from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import engine_for, running, sim_config, snapshot
from engine.run.runner import RunSettings
from engine.store.disk import ResultCache

SIZE_LIMIT = 1 * 2**20  # bytes: ≈ 230 results, so 1,000 runs evict most of them
MB = 2**20


def _dir_bytes(path: Path) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _files(path: Path) -> dict[str, int]:
    return {
        str(Path(root, name).relative_to(path)): os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    }


def _memory() -> tuple[float, float]:
    """(RSS, the file-backed part of it) in MB. File-backed pages (SQLite maps its
    database and WAL) are cache the kernel can drop; the rest is the heap."""
    gc.collect()
    info = psutil.Process().memory_info()
    return info.rss / MB, info.shared / MB


def run(level: Level) -> Row:
    scale, warmup, runs = level.p6_scale, level.p6_warmup, level.p6_runs
    process = psutil.Process()
    samples: list[dict[str, float]] = []
    with running(sim_config(scale=scale)) as server, tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(Path(tmp) / "cache", size_limit=SIZE_LIMIT)
        engine = engine_for(server, cache=cache)
        settings = RunSettings()  # unscaled: this row is about memory, not timing
        misses, peak_bytes = 0, 0
        peak_files: dict[str, int] = {}
        every = max(1, runs // 10)
        for i in range(warmup + runs):
            result = engine.analyze(snapshot(variant=i + 1), settings)
            misses += not result.cache.hit
            done = i + 1 - warmup
            if done >= 0 and (done % every == 0 or done == runs):
                stats = cache.stats()
                rss_mb, shared_mb = _memory()
                on_disk = _dir_bytes(Path(tmp) / "cache")
                if on_disk >= peak_bytes:  # which files make up the largest directory
                    peak_bytes, peak_files = on_disk, _files(Path(tmp) / "cache")
                samples.append(
                    {
                        "runs": done,
                        "rss_mb": rss_mb,
                        "file_backed_mb": shared_mb,
                        # Python-level objects, to tell a Python leak from native growth.
                        "py_blocks": sys.getallocatedblocks(),
                        "gc_objects": len(gc.get_objects()),
                        "dir_bytes": on_disk,
                        "entries": stats.entries,
                        "volume_bytes": stats.size_bytes,
                        "threads": process.num_threads(),
                        "fds": process.num_fds(),
                    }
                )
    first, last = samples[0], samples[-1]
    peak_dir = max(s["dir_bytes"] for s in samples)
    half = samples[len(samples) // 2]
    fifth = max(1, len(samples) // 5)  # samples are 10 % apart: two steps

    def rate(a: dict[str, float], b: dict[str, float]) -> float:
        """RSS growth per 100 runs between two samples."""
        return (b["rss_mb"] - a["rss_mb"]) * 100 / max(1.0, b["runs"] - a["runs"])

    row = Row(
        "P6",
        f"{runs:,} consecutive uncached runs (after {warmup} warm-up): memory and cache size",
        "RSS growth ≤ 10 MB; cache directory bounded by its size limit",
        {
            "profile": "baseline",
            "time_scale": scale,
            "runs": runs,
            "warmup": warmup,
            "cache_size_limit_bytes": SIZE_LIMIT,
            "server": "embedded in the same process, as the dashboard runs it",
        },
    )
    row.checks += [
        check("RSS growth after warm-up", [last["rss_mb"] - first["rss_mb"]], "MB",
              Target("<=", 10.0)),
        check("RSS growth per 100 runs, first fifth of the runs",
              [rate(first, samples[fifth])], "MB", binding=False),
        check("RSS growth per 100 runs, last fifth of the runs",
              [rate(samples[-1 - fifth], last)], "MB", binding=False,
              note="falling towards 0: it levels off rather than leaking per run"),
        check("Python allocated blocks, growth after warm-up",
              [float(last["py_blocks"] - first["py_blocks"])], "blocks", binding=False,
              note="sys.getallocatedblocks(): Python objects, not native memory"),
        check("objects tracked by the garbage collector, growth after warm-up",
              [float(last["gc_objects"] - first["gc_objects"])], "objects", binding=False),
        check("heap (RSS − file-backed) growth after warm-up",
              [(last["rss_mb"] - last["file_backed_mb"])
               - (first["rss_mb"] - first["file_backed_mb"])], "MB", binding=False),
        check("cache directory on disk, peak", [peak_dir / MB], "MB",
              Target("<=", SIZE_LIMIT / MB), judge="max",
              note="every file: results DB, its WAL and shared memory, lock files"),
        check("cache volume as diskcache counts it, peak",
              [max(s["volume_bytes"] for s in samples) / MB], "MB",
              Target("<=", SIZE_LIMIT / MB), binding=False,
              note="what size_limit bounds: the SQLite pages and value files"),
        check("cache directory growth over the second half of the runs",
              [(last["dir_bytes"] - half["dir_bytes"]) / MB], "MB", binding=False,
              note="≈ 0 means it has plateaued: bounded, whatever the bound"),
        check("runs that missed the cache (were really run)", [float(misses)], "runs",
              binding=False),
        check("threads at the end − after warm-up", [last["threads"] - first["threads"]], "",
              binding=False),
        check("open fds at the end − after warm-up", [last["fds"] - first["fds"]], "",
              binding=False),
    ]  # fmt: skip
    row.details = {"files_at_peak": peak_files, "samples": samples}
    return row
