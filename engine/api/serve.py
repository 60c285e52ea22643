"""`python -m engine serve`: the API under uvicorn, with `analyze`'s options as defaults.

With `--workers N` (N > 1) uvicorn starts N processes, each building its own app from
the same command line (passed in $QUORUM_SERVE_ARGV; it holds no secret: API keys are
read from the environment variable it names). They share the cache and single-flight
when QUORUM_CACHE_URL points at Redis; on the disk cache, the flock single-flight.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from engine.api.sources import SnapshotSource
from engine.options import add_run_options

if TYPE_CHECKING:
    from fastapi import FastAPI

ARGV_ENV = "QUORUM_SERVE_ARGV"


def add_serve_command_options(p: argparse.ArgumentParser) -> None:
    """`serve`'s options: analyze's (engine/options.py) as the defaults, and the server's own."""
    add_run_options(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    g.add_argument("--port", type=int, default=8080)
    g.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    g.add_argument("--dashboard-url", default=None,
                   help="run links: <URL>/?run=<id> (default: $QUORUM_DASHBOARD_URL, else "
                   "the dashboard's own default address)")  # fmt: skip
    a = p.add_argument_group("alerts")
    a.add_argument("--alert-instance-label", default="instance", metavar="LABEL",
                   help="the alert label naming the node_exporter target")  # fmt: skip
    a.add_argument("--alert-job-label", default="job", metavar="LABEL")
    a.add_argument("--alert-dedupe", type=float, default=None, metavar="S",
                   help="repeats of an alert group within S seconds are not re-analysed "
                   "(default: the cache TTL)")  # fmt: skip


def build_app(argv: list[str]) -> FastAPI:
    """The app a `serve` command line describes (raises UsageError on bad options)."""
    from engine import options
    from engine.api import settings as api_settings
    from engine.api import sources
    from engine.api.app import create_app

    parser = argparse.ArgumentParser(prog="python -m engine serve")
    add_serve_command_options(parser)
    args = parser.parse_args(argv)
    settings = options.load_settings(args)
    if args.snapshot:  # a bad file is a startup error, not one per request
        options.load_snapshot(args, settings)
    engine, defaults = options.build_engine(args, settings)
    access = sources.PrometheusAccess(
        url=args.prometheus or settings.prometheus_url,
        token=settings.prometheus_token.value,
        config=str(args.prometheus_config or settings.config_path),
    )
    try:
        server = api_settings.from_settings(
            settings,
            prometheus=access,
            dashboard_url=args.dashboard_url or settings.dashboard_url,
            instance_label=args.alert_instance_label,
            job_label=args.alert_job_label,
            alert_dedupe_s=args.alert_dedupe
            if args.alert_dedupe is not None
            else (engine.cache.ttl_s if engine.cache is not None else 300.0),
        )
    except ValueError as exc:
        raise options.UsageError(str(exc)) from None
    return create_app(engine, server, defaults=defaults, source=default_source(args))


def default_source(args: argparse.Namespace) -> SnapshotSource:
    """The snapshot of a request that names none: what `serve` was started with."""
    if args.scenario:
        return SnapshotSource("scenario", args.scenario)
    if args.snapshot:
        return SnapshotSource("file", args.snapshot)
    if args.prometheus:
        return SnapshotSource("prometheus", instance=args.instance, job=args.job)
    return SnapshotSource("live")


def app_from_environment() -> FastAPI:
    """uvicorn's factory for `--workers N`: the app of $QUORUM_SERVE_ARGV."""
    return build_app(json.loads(os.environ[ARGV_ENV]))


def run(argv: list[str], args: argparse.Namespace) -> int:
    """Serve until interrupted; `argv` is the command line after `serve`."""
    import uvicorn

    if args.workers < 1:
        print("error: workers: must be ≥ 1", file=sys.stderr)
        return 2
    options = {"host": args.host, "port": args.port, "log_level": "info" if args.verbose
               else "warning", "timeout_graceful_shutdown": 5}  # fmt: skip
    app = build_app(argv)  # bad options fail here, once, not in every worker
    if args.workers > 1:
        del app
        os.environ[ARGV_ENV] = json.dumps(argv)
        uvicorn.run(
            "engine.api.serve:app_from_environment", factory=True, workers=args.workers,
            **options,
        )  # fmt: skip
        return 0
    uvicorn.run(app, **options)
    return 0
