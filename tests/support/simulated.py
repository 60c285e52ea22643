"""Simulated Ollama servers for the engine tests: one with its backend config, which
specialists a server served, and a URL where none listens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.plumbing import free_port
from engine.service import BackendConfig
from engine.simulator import SimConfig, SimulatedOllamaServer

SPECIALISTS = (  # the default roster's, in its order
    "PerformanceAnalyst",
    "InfrastructureExpert",
    "SecurityAnalyst",
    "CostOptimizer",
    "ReliabilityEngineer",
)
SPECIALIST_NAMES = frozenset(SPECIALISTS)


@contextmanager
def simulated(
    *,
    slots: int = 6,
    scale: float = 0.01,
    profile: str = "gpu",
    faults: dict[str, str] | None = None,
    share_compute: bool = True,
) -> Iterator[tuple[SimulatedOllamaServer, BackendConfig]]:
    """One simulated server, and the backend config that points at it."""
    config = SimConfig(
        profile=profile,
        num_parallel=slots,
        time_scale=scale,
        faults=tuple((faults or {}).items()),
        share_compute=share_compute,
    )
    with SimulatedOllamaServer(config) as server:
        yield server, BackendConfig(kind="simulated", base_url=server.url, sim=config)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


def served(server: SimulatedOllamaServer) -> set[str]:
    """The specialists `server` answered."""
    return {agent for agent in server.stats.answers_by_agent() if agent in SPECIALIST_NAMES}
