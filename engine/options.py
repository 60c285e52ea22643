"""The options `analyze`, `compare` and `serve` share, and what they build: the snapshot,
the Engine and its run settings.

The CLI (engine/cli.py) and the API server (engine/api/serve.py) both import this, so
neither imports the other. Values come from the command line first, then
`engine.settings.Settings` (the environment, then quorum.toml, then the defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from engine.backends.endpoints import EndpointSpec, from_urls
from engine.backends.registry import DEFAULT_KIND, kinds
from engine.backends.server_slots import parse_slots_setting
from engine.run.agents import DEFAULT_MODEL, RosterError
from engine.run.runner import CONSOLIDATION_STYLES, MODES, RunSettings
from engine.service import BackendConfig, Engine, default_data_dir
from engine.settings import Settings
from engine.simulator import FAULT_KINDS, PROFILES, SimConfig
from engine.sources import prometheus
from engine.sources import snapshot as snapshots
from engine.store.base import DEFAULT_DEGRADED_TTL_S, DEFAULT_TTL_S
from engine.store.state import StateConfig, open_cache, open_history


class UsageError(Exception):
    """Bad input: exit 2 with one line."""


def add_run_options(p: argparse.ArgumentParser) -> None:
    """analyze's options: the snapshot, the backend, the run, the cache, the simulator."""
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--scenario", choices=sorted(snapshots.SCENARIOS), help="a bundled demo snapshot"
    )
    src.add_argument("--snapshot", metavar="FILE", help="a snapshot JSON file")
    src.add_argument("--live", action="store_true", help="sample this host (the default)")
    add_prometheus_options(p, src)
    _add_backend_options(p)
    _add_run_group(p)
    _add_cache_options(p)
    _add_sim_options(p)
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.add_argument("-v", "--verbose", action="store_true", help="log one line per agent")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    b = p.add_argument_group("backend")
    b.add_argument("--backend", choices=kinds(), default=None,
                   help="default: quorum.toml [[endpoints]] if any, else simulated")  # fmt: skip
    b.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="server URL (ollama: default $OLLAMA_HOST); repeat it for several "
                   "LLM hosts of --backend's kind (or use [[endpoints]] in quorum.toml)")  # fmt: skip
    b.add_argument("--model", default=DEFAULT_MODEL, help="default model for every agent")
    b.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    b.add_argument("--config", "--roster", dest="config", metavar="TOML",
                   help="quorum.toml to read (default: $QUORUM_CONFIG, else quorum.toml in "
                   "the repository root); --roster is its old name")  # fmt: skip
    b.add_argument(
        "--server-slots",
        default=None,
        metavar="auto|N",
        help="requests the server runs at once (auto: ask llama.cpp; Ollama: learn them); "
        "default: [server] slots in quorum.toml, else auto",
    )


def _add_run_group(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("run")
    r.add_argument("--mode", choices=MODES, default="parallel")
    r.add_argument("--agent-timeout", type=float, default=30.0, metavar="S")
    r.add_argument("--deadline", type=float, default=None, metavar="S", help="whole-run deadline")
    r.add_argument("--quorum", type=int, default=3)
    r.add_argument("--grace", type=float, default=2.0, metavar="S")
    r.add_argument(
        "--overlap", action="store_true", help="consolidate at quorum, fold late answers in"
    )
    r.add_argument("--max-concurrency", type=int, default=None, metavar="N")
    r.add_argument("--consolidation", choices=CONSOLIDATION_STYLES, default="compact",
                   help="compact: the Consolidator ranks and groups finding ids; "
                   "full: it rewrites every insight")  # fmt: skip


def _add_cache_options(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("cache")
    c.add_argument("--no-cache", action="store_true")
    c.add_argument("--refresh", action="store_true", help="skip the lookup, store the new result")
    c.add_argument("--cache-dir", default=None, help="default: $QUORUM_DATA_DIR/cache")
    c.add_argument(
        "--ttl",
        type=float,
        default=None,
        metavar="S",
        help=f"cache TTL (default: quorum.toml [cache] ttl, else {DEFAULT_TTL_S:g})",
    )
    c.add_argument("--degraded-ttl", type=float, default=None, metavar="S",
                   help="TTL of a result some agents did not answer (default: quorum.toml "
                   f"[cache] degraded_ttl, else {DEFAULT_DEGRADED_TTL_S:g})")  # fmt: skip


def _add_sim_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("simulated server")
    s.add_argument("--sim-profile", choices=sorted(PROFILES), default="baseline")
    s.add_argument("--sim-num-parallel", type=int, default=None, metavar="N",
                   help="the simulated server's slots (default: 4, as Ollama picks them "
                   "where the model fits in memory)")  # fmt: skip
    s.add_argument("--sim-time-scale", type=float, default=1.0, metavar="X")
    s.add_argument("--sim-seed", type=int, default=7)
    s.add_argument("--sim-fault", action="append", default=[], metavar="AGENT=KIND",
                   help=f"inject a fault: {', '.join(FAULT_KINDS)}")  # fmt: skip


def add_prometheus_options(
    p: argparse.ArgumentParser, src: argparse._MutuallyExclusiveGroup
) -> None:
    src.add_argument(
        "--prometheus", metavar="URL", help="read the snapshot from Prometheus (node_exporter)"
    )
    g = p.add_argument_group("prometheus")
    g.add_argument("--instance", default="", metavar="HOST:PORT", help="the node_exporter target")
    g.add_argument("--job", default="", metavar="NAME", help="the target's job label")
    g.add_argument(
        "--prometheus-config",
        metavar="TOML",
        default=None,
        help="[prometheus] queries and windows (default: the quorum.toml --config names)",
    )


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings under the command line: its `--config` file, the environment, secrets.toml."""
    return Settings.load(config=getattr(args, "config", None))


def load_snapshot(args: argparse.Namespace, settings: Settings) -> snapshots.Snapshot:
    if (args.instance or args.job) and not args.prometheus:
        raise UsageError("--instance and --job need --prometheus URL")
    try:
        if args.scenario:
            return snapshots.scenario(args.scenario)
        if args.snapshot:
            return snapshots.load_file(args.snapshot)
        if args.prometheus:
            return prometheus_snapshot(args, settings)
        return snapshots.live()
    except prometheus.PrometheusError as exc:
        raise ConnectionError(
            str(exc) if exc.field == "prometheus" else f"prometheus {exc}"
        ) from None
    except snapshots.SnapshotError as exc:
        raise UsageError(f"snapshot {exc}") from None


def prometheus_settings(args: argparse.Namespace, settings: Settings) -> prometheus.PromSettings:
    """`--prometheus-config`'s [prometheus] table, else the settings' (SnapshotError if wrong)."""
    if args.prometheus_config:
        return prometheus.load_settings(args.prometheus_config)
    if "prometheus" in settings.errors:
        raise UsageError(f"snapshot {settings.errors['prometheus']}")
    return settings.prometheus


def prometheus_snapshot(args: argparse.Namespace, settings: Settings) -> snapshots.Snapshot:
    """Read Prometheus; each unknown field is a warning line on stderr, not an error."""
    endpoint = prometheus.Endpoint.parse(args.prometheus, token=settings.prometheus_token.value)
    reading = prometheus.read_snapshot(
        endpoint, prometheus_settings(args, settings), instance=args.instance, job=args.job
    )
    for line in prometheus.iter_warnings(reading):
        print(f"warning: {line}", file=sys.stderr)
    return reading.snapshot


def faults(specs: Sequence[str], option: str = "--sim-fault") -> tuple[tuple[str, str], ...]:
    out = []
    for spec in specs:
        agent, sep, kind = spec.partition("=")
        if not sep or not agent or kind not in FAULT_KINDS:
            raise UsageError(
                f"{option}: expected AGENT=KIND with KIND in {', '.join(FAULT_KINDS)}, got {spec!r}"
            )
        out.append((agent, kind))
    return tuple(out)


def build_engine(args: argparse.Namespace, settings: Settings) -> tuple[Engine, RunSettings]:
    try:
        backend = backend_config(args, settings)
        run = RunSettings(
            mode=args.mode,
            quorum=args.quorum,
            grace_s=args.grace,
            overlap=args.overlap,
            agent_timeout_s=args.agent_timeout,
            deadline_s=args.deadline,
            max_concurrency=args.max_concurrency,
            consolidation=args.consolidation,
        )
        settings.check("agents")
        data_dir = default_data_dir()
        state = state_config(args, settings)
        cache = None
        if not args.no_cache:
            cache = open_cache(state, args.cache_dir or data_dir / "cache")
    except (ValueError, RosterError) as exc:
        raise UsageError(str(exc)) from None
    history = open_history(state, data_dir / "history.jsonl")
    return Engine(backend, roster=settings.roster, cache=cache, history=history), run


def backend_config(args: argparse.Namespace, settings: Settings) -> BackendConfig:
    """The backend the command line describes, over quorum.toml's [server] and [[endpoints]]."""
    sim = SimConfig(
        profile=args.sim_profile,
        num_parallel=args.sim_num_parallel,
        time_scale=args.sim_time_scale,
        seed=args.sim_seed,
        faults=faults(args.sim_fault),
    )
    if args.server_slots is not None:
        slots = parse_slots_setting(args.server_slots)
    else:
        settings.check("server")
        slots = settings.server_slots
    endpoints = endpoint_list(args, slots, settings)
    return BackendConfig(
        kind=endpoints[0].kind if endpoints else args.backend or DEFAULT_KIND,
        base_url=args.base_url[0] if args.base_url and not endpoints else None,
        model=args.model,
        api_key=os.environ.get(args.api_key_env) or None,
        sim=sim,
        server_slots=slots,
        endpoints=endpoints,
    )


def endpoint_list(
    args: argparse.Namespace, slots: int | None, settings: Settings
) -> tuple[EndpointSpec, ...]:
    """Several LLM hosts: `--base-url` given more than once, else quorum.toml's
    [[endpoints]] unless --backend or --base-url says otherwise; () for one server."""
    urls: list[str] = args.base_url or []
    if len(urls) > 1:
        kind = args.backend or DEFAULT_KIND
        return from_urls(kind, urls, slots=slots, api_key_env=args.api_key_env)
    if urls or args.backend is not None:
        return ()
    settings.check("endpoints")
    return settings.endpoints


def state_config(args: argparse.Namespace, settings: Settings) -> StateConfig:
    """Cache settings: the command line, then $QUORUM_CACHE_URL, then quorum.toml."""
    return settings.state_config(ttl_s=args.ttl, degraded_ttl_s=args.degraded_ttl)
