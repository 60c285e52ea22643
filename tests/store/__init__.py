"""Shared state (engine/store/): the result cache, single-flight, history, Redis."""
