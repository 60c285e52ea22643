"""`python -m engine`: analyze, compare, serve (the HTTP API), snapshot, serve-simulated."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.api.serve import add_serve_options
from engine.backends.endpoints import EndpointSpec, endpoints_section, from_urls
from engine.records import AgentRun, AnalysisResult
from engine.report.timeline import (
    PROJECTED_LABEL,
    comparison,
    consolidation_rows,
    projected_s,
    projection_scale,
    slot_advice,
)
from engine.run.agents import DEFAULT_MODEL, RosterError, load_roster
from engine.run.runner import CONSOLIDATION_STYLES, MODES, ProgressEvent, RunSettings
from engine.run.slots import parse_slots_setting, slots_from_config
from engine.service import BACKEND_KINDS, BackendConfig, Engine, default_data_dir
from engine.simulator import FAULT_KINDS, PROFILES, SimConfig, serve_forever
from engine.sources import prometheus
from engine.sources import snapshot as snapshots
from engine.store.disk import DEFAULT_TTL_S
from engine.store.state import (
    DEFAULT_DEGRADED_TTL_S,
    DEFAULT_LEASE_S,
    StateConfig,
    cache_section,
    cache_url,
    config_file,
    open_cache,
    open_history,
)


class UsageError(Exception):
    """Bad input: exit 2 with one line."""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--scenario", choices=sorted(snapshots.SCENARIOS), help="a bundled demo snapshot"
    )
    src.add_argument("--snapshot", metavar="FILE", help="a snapshot JSON file")
    src.add_argument("--live", action="store_true", help="sample this host (the default)")
    _add_prometheus_options(p, src)
    b = p.add_argument_group("backend")
    b.add_argument("--backend", choices=BACKEND_KINDS, default=None,
                   help="default: quorum.toml [[endpoints]] if any, else simulated")  # fmt: skip
    b.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="server URL (ollama: default $OLLAMA_HOST); repeat it for several "
                   "LLM hosts of --backend's kind (or use [[endpoints]] in quorum.toml)")  # fmt: skip
    b.add_argument("--model", default=DEFAULT_MODEL, help="default model for every agent")
    b.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    b.add_argument("--roster", metavar="TOML", help="agent overrides (models, prompts)")
    b.add_argument(
        "--server-slots",
        default=None,
        metavar="auto|N",
        help="requests the server runs at once (auto: ask llama.cpp; Ollama: learn them); "
        "default: [server] slots in quorum.toml, else auto",
    )
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
    s = p.add_argument_group("simulated server")
    s.add_argument("--sim-profile", choices=sorted(PROFILES), default="baseline")
    s.add_argument("--sim-num-parallel", type=int, default=None, metavar="N",
                   help="the simulated server's slots (default: 4, as Ollama picks them "
                   "where the model fits in memory)")  # fmt: skip
    s.add_argument("--sim-time-scale", type=float, default=1.0, metavar="X")
    s.add_argument("--sim-seed", type=int, default=7)
    s.add_argument("--sim-fault", action="append", default=[], metavar="AGENT=KIND",
                   help=f"inject a fault: {', '.join(FAULT_KINDS)}")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.add_argument("-v", "--verbose", action="store_true", help="log one line per agent")


def _add_prometheus_options(
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
        help="[prometheus] queries and windows (default: $QUORUM_ROSTER or ./quorum.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_options(sub.add_parser("analyze", help="analyse one snapshot"))
    _add_run_options(sub.add_parser("compare", help="single vs sequential vs parallel vs cached"))
    api = sub.add_parser("serve", help="the HTTP API (docs/api.md)")
    _add_run_options(api)
    add_serve_options(api)
    snap = sub.add_parser("snapshot", help="print a snapshot as JSON")
    src = snap.add_mutually_exclusive_group()
    src.add_argument("--scenario", choices=sorted(snapshots.SCENARIOS))
    src.add_argument("--snapshot", metavar="FILE")
    src.add_argument("--live", action="store_true")
    _add_prometheus_options(snap, src)
    serve = sub.add_parser("serve-simulated", help="run the simulated Ollama server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=11435)
    serve.add_argument("--num-parallel", type=int, default=None,
                       help="like OLLAMA_NUM_PARALLEL (default: 4, or 1 with --low-memory, "
                       "as Ollama picks)")  # fmt: skip
    serve.add_argument(
        "--low-memory",
        action="store_true",
        help="the model does not fit in memory 4 times: Ollama's default is 1",
    )
    serve.add_argument(
        "--llama-props",
        action="store_true",
        help="llama.cpp mode: report total_slots at GET /props",
    )
    serve.add_argument("--profile", choices=sorted(PROFILES), default="baseline")
    serve.add_argument("--time-scale", type=float, default=1.0)
    serve.add_argument("--seed", type=int, default=7)
    serve.add_argument("--fault", action="append", default=[], metavar="AGENT=KIND",
                       help=f"inject a fault for X-Quorum-Agent AGENT: {', '.join(FAULT_KINDS)}")  # fmt: skip
    return parser


def load_snapshot(args: argparse.Namespace) -> snapshots.Snapshot:
    if (args.instance or args.job) and not args.prometheus:
        raise UsageError("--instance and --job need --prometheus URL")
    try:
        if args.scenario:
            return snapshots.scenario(args.scenario)
        if args.snapshot:
            return snapshots.load_file(args.snapshot)
        if args.prometheus:
            return _prometheus_snapshot(args)
        return snapshots.live()
    except prometheus.PrometheusError as exc:
        raise ConnectionError(
            str(exc) if exc.field == "prometheus" else f"prometheus {exc}"
        ) from None
    except snapshots.SnapshotError as exc:
        raise UsageError(f"snapshot {exc}") from None


def _prometheus_snapshot(args: argparse.Namespace) -> snapshots.Snapshot:
    """Read Prometheus; each unknown field is a warning line on stderr, not an error."""
    config = args.prometheus_config or os.environ.get("QUORUM_ROSTER") or "quorum.toml"
    settings = prometheus.load_settings(config)
    token, _ = prometheus.bearer_token(Path(".streamlit/secrets.toml"))
    endpoint = prometheus.Endpoint.parse(args.prometheus, token=token)
    reading = prometheus.read_snapshot(endpoint, settings, instance=args.instance, job=args.job)
    for line in prometheus.iter_warnings(reading):
        print(f"warning: {line}", file=sys.stderr)
    return reading.snapshot


def _faults(specs: Sequence[str], option: str = "--sim-fault") -> tuple[tuple[str, str], ...]:
    out = []
    for spec in specs:
        agent, sep, kind = spec.partition("=")
        if not sep or not agent or kind not in FAULT_KINDS:
            raise UsageError(
                f"{option}: expected AGENT=KIND with KIND in {', '.join(FAULT_KINDS)}, got {spec!r}"
            )
        out.append((agent, kind))
    return tuple(out)


def build_engine(args: argparse.Namespace) -> tuple[Engine, RunSettings]:
    try:
        sim = SimConfig(
            profile=args.sim_profile,
            num_parallel=args.sim_num_parallel,
            time_scale=args.sim_time_scale,
            seed=args.sim_seed,
            faults=_faults(args.sim_fault),
        )
        slots = (
            parse_slots_setting(args.server_slots)
            if args.server_slots is not None
            else slots_from_config(config_file(args.roster))
        )
        endpoints = endpoint_list(args, slots)
        backend = BackendConfig(
            kind=endpoints[0].kind if endpoints else args.backend or "simulated",
            base_url=args.base_url[0] if args.base_url and not endpoints else None,
            model=args.model,
            api_key=os.environ.get(args.api_key_env) or None,
            sim=sim,
            server_slots=slots,
            endpoints=endpoints,
        )
        settings = RunSettings(
            mode=args.mode,
            quorum=args.quorum,
            grace_s=args.grace,
            overlap=args.overlap,
            agent_timeout_s=args.agent_timeout,
            deadline_s=args.deadline,
            max_concurrency=args.max_concurrency,
            consolidation=args.consolidation,
        )
        roster = load_roster(args.roster)
        data_dir = default_data_dir()
        state = state_config(args)
        cache = None
        if not args.no_cache:
            cache = open_cache(state, args.cache_dir or data_dir / "cache")
    except (ValueError, RosterError) as exc:
        raise UsageError(str(exc)) from None
    history = open_history(state, data_dir / "history.jsonl")
    return Engine(backend, roster=roster, cache=cache, history=history), settings


def endpoint_list(args: argparse.Namespace, slots: int | None) -> tuple[EndpointSpec, ...]:
    """Several LLM hosts: `--base-url` given more than once, else quorum.toml's
    [[endpoints]] unless --backend or --base-url says otherwise; () for one server."""
    urls: list[str] = args.base_url or []
    if len(urls) > 1:
        kind = args.backend or "simulated"
        return from_urls(kind, urls, slots=slots, api_key_env=args.api_key_env)
    if urls or args.backend is not None:
        return ()
    return endpoints_section(config_file(args.roster))


def state_config(args: argparse.Namespace) -> StateConfig:
    """Cache settings: the command line, then $QUORUM_CACHE_URL, then quorum.toml."""
    section = cache_section(config_file(args.roster))
    return StateConfig(
        url=cache_url(section),
        ttl_s=args.ttl if args.ttl is not None else section.get("ttl", DEFAULT_TTL_S),
        degraded_ttl_s=args.degraded_ttl
        if args.degraded_ttl is not None
        else section.get("degraded_ttl", DEFAULT_DEGRADED_TTL_S),
        lease_s=section.get("lease", DEFAULT_LEASE_S),
    )


def _check_reachable(engine: Engine) -> None:
    if engine.backend.pooled:
        # One endpoint down is a warning (the run skips it); all of them down, an error.
        statuses = engine.endpoint_statuses()
        for url, status in statuses:
            if not status.reachable:
                print(
                    f"warning: endpoint {url} unreachable, skipped: {status.error}", file=sys.stderr
                )
        if not any(status.reachable for _, status in statuses):
            raise ConnectionError("no LLM endpoint is reachable")
        return
    if engine.backend.simulated:
        return
    status = engine.server_status()
    if not status.reachable:
        raise ConnectionError(status.error or f"cannot reach {engine.backend.url()}")


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def format_result(result: AnalysisResult) -> str:
    b = result.backend
    label = " [SIMULATED]" if b.simulated else ""
    cache = f"cache hit, {result.cache.age_s:.0f}s old" if result.cache.hit else "fresh run"
    if result.cache.ttl_s is not None and result.agents_participated < result.agents_total:
        cache += f" · degraded result, cached only {result.cache.ttl_s:.0f}s"
    lines = [
        f"{result.mode} analysis on {b.kind} {b.url} ({b.model}){label}",
        f"tier {result.tier} · confidence {result.confidence} · "
        f"{result.agents_participated}/{result.agents_total} agents"
        + (f" · missing: {', '.join(result.missing_roles)}" if result.missing_roles else ""),
        f"wall {result.execution_time_s:.3f}s · critical path {result.critical_path_s:.2f}s "
        f"({result.critical_path_source} timings) · {cache}",
        f"server slots: {_slots_text(result)}",
        "",
        f"{'agent':<22}{'status':<10}{'start':>8}{'end':>8}{'wait':>8}{'queue':>8}{'load':>8}"
        f"{'prefill':>9}{'decode':>8}{'tokens':>8}",
    ]
    rows: list[AgentRun] = list(result.agents)
    if result.consolidation is not None:
        rows.append(result.consolidation)
    for run in rows:
        name = run.name + (" (merge)" if getattr(run, "method", "") == "fallback" else "")
        lines.append(
            f"{name[:21]:<22}{run.status:<10}{run.start_s:>7.2f}s{run.end_s:>7.2f}s"
            f"{_fmt(run.client_queue_s):>8}{_fmt(run.queue_s):>8}{_fmt(run.load_s):>8}{_fmt(run.prefill_s):>9}"
            f"{_fmt(run.decode_s):>8}{run.output_tokens if run.output_tokens is not None else '-':>8}"
        )
        if run.error:
            lines.append(f"{'':<22}↳ {run.error}")
    lines.append("")
    for insight in result.insights:
        lines.append(f"[{insight.severity}] {insight.title} (confidence {insight.confidence}, "
                     f"agents: {', '.join(insight.agents) or 'rules only'})")  # fmt: skip
        lines.append(f"    {insight.observation}")
        lines.extend(f"    - {rec}" for rec in insight.recommendations)
    lines.append("")
    lines.append(result.collaboration_summary)
    consolidation = result.consolidation
    if consolidation is not None and consolidation.summary:
        lines.append(
            f"Consolidator's verdict: {consolidation.summary} "
            f"(confidence {consolidation.verdict_confidence})"
        )
    advice = slot_advice(result)
    if advice is not None:
        lines.append(advice.sentence())
    return "\n".join(lines)


def _slots_text(result: AnalysisResult) -> str:
    count = "no limit" if result.server_slots is None else str(result.server_slots)
    return f"{count} ({result.server_slots_source or 'not recorded'})"


def progress_line(run: str, event: ProgressEvent) -> str | None:
    """The stderr line for a finished agent (None for every other event)."""
    if event.kind != "finished":
        return None
    where = f"[{run}] " if run else ""
    return f"quorum: {where}{event.agent} {event.status or 'done'} at {event.elapsed_s:.2f}s"


def print_progress(run: str, event: ProgressEvent) -> None:
    """One line on stderr per finished agent; stdout stays the result (or its JSON)."""
    line = progress_line(run, event)
    if line is not None:
        print(line, file=sys.stderr, flush=True)


def print_finished_run(run: str, result: AnalysisResult) -> None:
    how = (
        "from the cache"
        if result.cache.hit
        else f"{result.agents_participated}/{result.agents_total} agents"
    )
    print(
        f"quorum: [{run}] finished: wall {result.execution_time_s:.2f}s · "
        f"{result.tier} {result.confidence} · {how}",
        file=sys.stderr,
        flush=True,
    )


def format_compare(data: dict[str, Any], time_scale: float | None = None) -> str:
    """The comparison as text; `time_scale` (simulator only, ≠ 1): also projected to real time."""
    lines = [
        f"{'run':<12}{'wall':>10}{'critical path':>15}{'tier':>11}{'confidence':>12}{'agents':>8}"
    ]
    for name in ("single", "sequential", "parallel", "cached"):
        r = data[name]
        lines.append(
            f"{name:<12}{r['execution_time_s']:>9.3f}s{r['critical_path_s']:>14.2f}s"
            f"{r['tier']:>11}{r['confidence']:>12}{r['agents_participated']:>5}/{r['agents_total']}"
        )
    par = data["parallel"]
    queued = sum((a["queue_s"] or 0.0) for a in par["agents"])
    lines.append("")
    lines.append(f"speedup (sequential ÷ parallel): {data['speedup']}×")
    ideal = comparison(data).ideal_speedup or 0.0
    lines.append(f"ideal speedup (sequential ÷ parallel with a slot per agent): {ideal:.2f}×")
    lines.append(f"server queue time in the parallel run (all agents): {queued:.2f}s")
    if time_scale:
        seq_s, par_s = data["sequential"]["execution_time_s"], par["execution_time_s"]
        lines.append(
            f"{PROJECTED_LABEL}: sequential {projected_s(seq_s, time_scale):.1f}s → "
            f"parallel {projected_s(par_s, time_scale):.1f}s (time scale {time_scale:g})"
        )
    lines.extend(_format_consolidation_variants(data, time_scale))
    if par["backend"]["simulated"]:
        lines.append("All timings come from the SIMULATED Ollama server.")
    return "\n".join(lines)


def _format_consolidation_variants(data: dict[str, Any], time_scale: float | None) -> list[str]:
    """The consolidation variants' table: after the last agent, wall, consolidator tokens."""
    rows = consolidation_rows(data)
    if not rows:
        return []

    def seconds(value: float) -> str:
        text = f"{value:.2f}s"
        return f"{text} ({projected_s(value, time_scale):.1f}s)" if time_scale else text

    def tokens(n: int | None) -> str:
        return "–" if n is None else str(n)

    lines = ["", "consolidation: full vs compact, cold vs warm (fresh parallel runs)"]
    if time_scale:
        lines.append(f"(in brackets: {PROJECTED_LABEL}, time scale {time_scale:g})")
    lines.append(
        f"{'variant':<27}{'after last agent':>18}{'wall':>18}"
        f"{'prompt evaluated':>18}{'cached':>8}  warm-ups (evaluated)"
    )
    for row in rows:
        warm = f"{row.warmups} ({tokens(row.warmup_evaluated_tokens)})" if row.warmups else "–"
        lines.append(
            f"{row.label:<27}{seconds(row.after_last_agent_s):>18}{seconds(row.wall_s):>18}"
            f"{tokens(row.evaluated_tokens):>18}{tokens(row.cached_tokens):>8}  {warm}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    try:
        if args.command == "serve-simulated":
            serve_forever(
                SimConfig(profile=args.profile, num_parallel=args.num_parallel,
                          fits_in_memory=not args.low_memory, llama_props=args.llama_props,
                          time_scale=args.time_scale, seed=args.seed,
                          faults=_faults(args.fault, "--fault")),
                args.host,
                args.port,
            )  # fmt: skip
            return 0
        if args.command == "snapshot":
            print(json.dumps(load_snapshot(args).to_dict(), indent=2))
            return 0
        if args.command == "serve":
            from engine.api.serve import run

            raw = list(sys.argv[1:] if argv is None else argv)
            return run(raw[raw.index("serve") + 1 :], args)
        snap = load_snapshot(args)
        engine, settings = build_engine(args)
        _check_reachable(engine)
        if args.command == "compare":
            data = engine.compare(
                snap, settings, progress=print_progress, finished=print_finished_run
            )
            scale = projection_scale(engine.backend.simulated, engine.backend.sim.time_scale)
            print(json.dumps(data, indent=2) if args.json else format_compare(data, scale))
            return 0
        result = engine.analyze(
            snap, settings, refresh=args.refresh, progress=lambda e: print_progress("", e)
        )
        print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
        return 0 if result.status == "success" else 1
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
