"""What the engine may know of the simulated server before a run: its model for pacing.

A parallel run sends fewer agents at once than the server's slots when more would outlast
their timeout (engine/run/pacing.py). For a real server that is learned from its measured
runs; for the simulator it is known up front: its profile's curve and rates.
"""

from __future__ import annotations

from engine.run.agents import AgentSpec
from engine.run.pacing import ServerModel
from engine.simulator.config import SimConfig
from engine.simulator.profiles import PROFILES
from engine.throughput import Job


def simulated_server_model(config: SimConfig) -> ServerModel | None:
    """How this simulated server runs agents side by side: its profile's curve, and each
    agent's single-stream work from the profile's rates at the server's time scale — the
    expected values of the model it serves (no jitter, no model load). None when its slots
    do not share compute (`share_compute=False`, or a flat curve)."""
    profile = PROFILES.get(config.profile)
    if profile is None or not config.share_compute or profile.curve.flat:
        return None

    def work(spec: AgentSpec, user: str) -> Job:
        characters = len(spec.system_prompt) + len(user)
        prompt = max(1, round(characters / profile.prompt_chars_per_token))
        out = profile.output_tokens("agent")
        if spec.max_tokens is not None:
            out = min(out, spec.max_tokens)
        scale = config.time_scale
        return Job(prompt / profile.prefill_tps * scale, out / profile.decode_tps * scale)

    return ServerModel(
        profile.curve, work, f"the simulated {profile.name} profile's curve and rates"
    )
