"""The embedded simulated LLM server (Ollama or llama.cpp protocol) and its timing model.

The names most importers need, from the modules that define them (profiles, config,
model, answers, handler, server, registry).
"""

from engine.simulator.answers import answer_for_prompt
from engine.simulator.config import (
    DEFAULT_MODELS,
    FAULT_KINDS,
    OLLAMA_AUTO_PARALLEL,
    VERSION,
    SimConfig,
)
from engine.simulator.handler import CACHED_COUNT_FIELD, LLAMA_CTX_PER_SLOT
from engine.simulator.model import (
    SimStats,
    TimingModel,
    answer_tokens,
    estimate_tokens,
    split_prompt_tokens,
)
from engine.simulator.pacing import simulated_server_model
from engine.simulator.profiles import PROFILES, SimProfile
from engine.simulator.registry import shared_server
from engine.simulator.server import SimulatedOllamaServer, serve_forever

__all__ = [
    "CACHED_COUNT_FIELD",
    "DEFAULT_MODELS",
    "FAULT_KINDS",
    "LLAMA_CTX_PER_SLOT",
    "OLLAMA_AUTO_PARALLEL",
    "PROFILES",
    "VERSION",
    "SimConfig",
    "SimProfile",
    "SimStats",
    "SimulatedOllamaServer",
    "TimingModel",
    "answer_for_prompt",
    "answer_tokens",
    "estimate_tokens",
    "serve_forever",
    "shared_server",
    "simulated_server_model",
    "split_prompt_tokens",
]
