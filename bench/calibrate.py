"""Calibrate the CPU profiles' throughput curve against llama.cpp's own server, here.

`python -m bench.calibrate [--out bench/calibration/llama_cpu.json] [--rounds 2]`

Starts llama.cpp's server (bench/llama_server.py: `$QUORUM_LLAMA_SERVER`,
`$QUORUM_LLAMA_MODEL`, SmolLM2-135M on 2 threads) with 6 slots, then for 1 to 6
concurrent streams sends that many `/completion` requests at once — distinct prompts of
the size of an agent's (no prefix to reuse), a fixed number of output tokens
(`ignore_eos`) — and reads each one's own `timings` (prompt_n / prompt_ms, predicted_n /
predicted_ms). The per-stream prefill and decode rates at each concurrency, their medians
over streams and rounds, and the facts of the machine (CPU model, cores, `os.getloadavg()`
before and after each step: other work shares these cores) go to a JSON file the
simulator's curves cite (engine/simulator/profiles.py, via engine/throughput.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import llama_server

OUT = Path(__file__).resolve().parent / "calibration" / "llama_cpu.json"
MAX_STREAMS = 6
PROMPT_WORDS = 230  # ≈ 300 tokens, an agent's prompt
OUTPUT_TOKENS = 96
TIMEOUT_S = 600.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def prompt(stream: int, round_: int) -> str:
    """A prompt no other request shares a prefix with (its first words differ)."""
    words = [f"w{stream}r{round_}n{i}" for i in range(8)]
    body = " ".join(f"metric{i % 37} value {i * 7 % 101}" for i in range(PROMPT_WORDS // 3))
    return " ".join(words) + " Summarise these host metrics: " + body


async def one(client: httpx.AsyncClient, text: str) -> dict[str, Any]:
    body = {
        "prompt": text,
        "n_predict": OUTPUT_TOKENS,
        "ignore_eos": True,
        "cache_prompt": False,
        "temperature": 0.0,
    }
    response = await client.post("/completion", json=body)
    response.raise_for_status()
    timings: dict[str, Any] = response.json()["timings"]
    return timings


async def step(root: str, streams: int, round_: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=root, timeout=TIMEOUT_S) as client:
        load_before = os.getloadavg()
        started = time.perf_counter()
        timings = await asyncio.gather(*(one(client, prompt(s, round_)) for s in range(streams)))
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
    return {
        "streams": streams,
        "round": round_,
        "wall_s": round(wall, 3),
        "prefill_tps": [round(t["prompt_n"] / t["prompt_ms"] * 1000, 2) for t in timings],
        "decode_tps": [round(t["predicted_n"] / t["predicted_ms"] * 1000, 2) for t in timings],
        "prompt_tokens": [t["prompt_n"] for t in timings],
        "output_tokens": [t["predicted_n"] for t in timings],
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def tokenizer_density(root: str) -> dict[str, Any]:
    """Characters a token of the server's model on Quorum's own agent prompts (system +
    user for the cpu-saturation snapshot), counted by llama.cpp's `/tokenize`."""
    from engine.run.agents import DEFAULT_ROSTER, agent_user_prompt
    from engine.sources.snapshot import scenario

    values = scenario("cpu-saturation").quantised(None)
    per_agent = {}
    for spec in DEFAULT_ROSTER.specialists:
        text = spec.system_prompt + agent_user_prompt(spec.role, values, spec.instructions)
        reply = httpx.post(f"{root}/tokenize", json={"content": text}, timeout=30)
        tokens = len(reply.json()["tokens"])
        per_agent[spec.name] = {"chars": len(text), "tokens": tokens}
    chars = sum(v["chars"] for v in per_agent.values())
    tokens = sum(v["tokens"] for v in per_agent.values())
    return {"chars_per_token": round(chars / tokens, 3), "prompts": per_agent}


def summarise(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per concurrency: median per-stream rates and their ratio to one stream's."""
    out = []
    for n in range(1, MAX_STREAMS + 1):
        mine = [s for s in steps if s["streams"] == n]
        prefill = statistics.median(v for s in mine for v in s["prefill_tps"])
        decode = statistics.median(v for s in mine for v in s["decode_tps"])
        out.append({"streams": n, "prefill_tps": round(prefill, 2), "decode_tps": round(decode, 2)})
    single = out[0]
    for point in out:
        point["prefill_factor"] = round(point["prefill_tps"] / single["prefill_tps"], 3)
        point["decode_factor"] = round(point["decode_tps"] / single["decode_tps"], 3)
        point["decode_aggregate_x"] = round(point["decode_factor"] * point["streams"], 3)
    return out


async def measure(root: str, rounds: int) -> list[dict[str, Any]]:
    await step(root, 1, -1)  # warm the server (first-use allocations), not recorded
    steps = []
    for round_ in range(rounds):
        for n in range(1, MAX_STREAMS + 1):
            steps.append(await step(root, n, round_))
            print(f"  {n} stream(s), round {round_ + 1}: {steps[-1]['wall_s']} s", flush=True)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--tokens-only",
        action="store_true",
        help="only (re)measure the tokenizer's density into the existing file",
    )
    args = parser.parse_args(argv)
    launcher, model = llama_server.find_server()
    if launcher is None or model is None:
        print("llama.cpp's server or the SmolLM2 model not found (see bench/llama_server.py)")
        return 2
    with tempfile.TemporaryDirectory(prefix="quorum-calibrate-") as logs:
        server = llama_server.start(launcher, model, MAX_STREAMS, Path(logs))
        try:
            root = server.url.removesuffix("/v1")
            props = httpx.get(f"{root}/props", timeout=10).json()
            tokenizer = tokenizer_density(root)
            if args.tokens_only:
                record = json.loads(args.out.read_text())
                record["tokenizer"] = tokenizer
                args.out.write_text(json.dumps(record, indent=1) + "\n")
                print(json.dumps(tokenizer, indent=1))
                return 0
            steps = asyncio.run(measure(root, args.rounds))
        finally:
            llama_server.stop(server)
    record = {
        "what": "per-stream prefill and decode rates of llama.cpp's server vs concurrent streams",
        "command": "python -m bench.calibrate",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "threads": llama_server.THREADS,
            "python": sys.version.split()[0],
            "note": "the cores are shared with other work: see loadavg per step",
        },
        "server": {
            "build_info": props.get("build_info"),
            "total_slots": props.get("total_slots"),
            "model": Path(model).name,
            "prompt_words": PROMPT_WORDS,
            "output_tokens": OUTPUT_TOKENS,
        },
        "curve": summarise(steps),
        "tokenizer": tokenizer,
        "steps": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["curve"], indent=1))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
