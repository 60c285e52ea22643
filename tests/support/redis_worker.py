"""An engine process for the Redis tests: `python -m tests.support.redis_worker SIM_URL SCALE N`.

Its Redis URL comes from $QUORUM_CACHE_URL (never the command line). It builds an
Engine with Redis state pointed at the test's simulated server, logs to stderr, prints
`ready`, waits for a line on stdin, then runs N concurrent callers on one snapshot. It
prints `started` when its own analysis begins (the first progress event: this process
holds the lease), then one JSON line per caller and `done`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

from engine.run.runner import ProgressEvent, RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig
from engine.sources.snapshot import scenario
from engine.store.redis_store import RedisHistory, RedisResultCache

SCENARIO = "error-spike"


def main() -> int:
    sim_url, scale, callers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    lease_s = float(os.environ.get("QUORUM_TEST_LEASE_S", "10"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    url = os.environ["QUORUM_CACHE_URL"]
    sim = SimConfig(profile="gpu", num_parallel=6, time_scale=scale)
    backend = BackendConfig(kind="simulated", base_url=sim_url, sim=sim)
    engine = Engine(
        backend, cache=RedisResultCache(url, lease_s=lease_s), history=RedisHistory(url)
    )
    said = threading.Lock()
    started: list[bool] = []

    def progress(_: ProgressEvent) -> None:
        with said:
            if not started:
                started.append(True)
                print("started", flush=True)

    print("ready", flush=True)
    sys.stdin.readline()
    out: list[dict[str, object]] = []

    def call() -> None:
        result = engine.analyze(scenario(SCENARIO), RunSettings(), progress=progress)
        out.append({"hit": result.cache.hit, "status": result.status, "ttl_s": result.cache.ttl_s})

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for item in out:
        print(json.dumps(item), flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
