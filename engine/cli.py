"""`python -m engine`: analyze, compare, serve (the HTTP API), snapshot, serve-simulated."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from engine.api.serve import add_serve_command_options
from engine.options import (
    UsageError,
    add_prometheus_options,
    add_run_options,
    build_engine,
    faults,
    load_settings,
    load_snapshot,
)
from engine.records import AgentRun, AnalysisResult
from engine.report.compare import COMPARE_RUNS, Comparison
from engine.report.timeline import (
    PROJECTED_LABEL,
    projected_s,
    projection_scale,
    slot_advice,
)
from engine.run.runner import ProgressEvent
from engine.service import Engine
from engine.simulator import FAULT_KINDS, PROFILES, SimConfig, serve_forever
from engine.sources import snapshot as snapshots

__all__ = ["UsageError", "build_parser", "format_compare", "format_result", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_options(sub.add_parser("analyze", help="analyse one snapshot"))
    add_run_options(sub.add_parser("compare", help="single vs sequential vs parallel vs cached"))
    add_serve_command_options(sub.add_parser("serve", help="the HTTP API (docs/api.md)"))
    snap = sub.add_parser("snapshot", help="print a snapshot as JSON")
    src = snap.add_mutually_exclusive_group()
    src.add_argument("--scenario", choices=sorted(snapshots.SCENARIOS))
    src.add_argument("--snapshot", metavar="FILE")
    src.add_argument("--live", action="store_true")
    add_prometheus_options(snap, src)
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


def format_compare(comp: Comparison, time_scale: float | None = None) -> str:
    """The comparison as text; `time_scale` (simulator only, ≠ 1): also projected to real time."""
    lines = [
        f"{'run':<12}{'wall':>10}{'critical path':>15}{'tier':>11}{'confidence':>12}{'agents':>8}"
    ]
    for name in COMPARE_RUNS:
        r = comp.runs[name]
        lines.append(
            f"{name:<12}{r.execution_time_s:>9.3f}s{r.critical_path_s:>14.2f}s"
            f"{r.tier:>11}{r.confidence:>12}{r.agents_participated:>5}/{r.agents_total}"
        )
    par = comp.runs["parallel"]
    queued = sum((a.queue_s or 0.0) for a in par.agents)
    lines.append("")
    lines.append(f"speedup (sequential ÷ parallel): {comp.speedup}×")
    ideal = comp.ideal_speedup or 0.0
    lines.append(f"ideal speedup (sequential ÷ parallel with a slot per agent): {ideal:.2f}×")
    lines.append(f"server queue time in the parallel run (all agents): {queued:.2f}s")
    if time_scale:
        seq_s, par_s = comp.runs["sequential"].execution_time_s, par.execution_time_s
        lines.append(
            f"{PROJECTED_LABEL}: sequential {projected_s(seq_s, time_scale):.1f}s → "
            f"parallel {projected_s(par_s, time_scale):.1f}s (time scale {time_scale:g})"
        )
    lines.extend(_format_consolidation_variants(comp, time_scale))
    if par.backend.simulated:
        lines.append("All timings come from the SIMULATED Ollama server.")
    return "\n".join(lines)


def _format_consolidation_variants(comp: Comparison, time_scale: float | None) -> list[str]:
    """The consolidation variants' table: after the last agent, wall, consolidator tokens."""
    rows = comp.consolidation_rows
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
                          faults=faults(args.fault, "--fault")),
                args.host,
                args.port,
            )  # fmt: skip
            return 0
        settings = load_settings(args)
        if args.command == "snapshot":
            print(json.dumps(load_snapshot(args, settings).to_dict(), indent=2))
            return 0
        if args.command == "serve":
            from engine.api.serve import run

            raw = list(sys.argv[1:] if argv is None else argv)
            return run(raw[raw.index("serve") + 1 :], args)
        snap = load_snapshot(args, settings)
        engine, run_settings = build_engine(args, settings)
        _check_reachable(engine)
        if args.command == "compare":
            comp = engine.compare(
                snap, run_settings, progress=print_progress, finished=print_finished_run
            )
            scale = projection_scale(engine.backend.simulated, engine.backend.sim.time_scale)
            print(
                json.dumps(comp.to_dict(), indent=2) if args.json else format_compare(comp, scale)
            )
            return 0
        result = engine.analyze(
            snap, run_settings, refresh=args.refresh, progress=lambda e: print_progress("", e)
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
