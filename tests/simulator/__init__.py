"""The embedded simulated server (engine/simulator/) and its timing model."""
