"""Where snapshots come from (engine/sources/): files, scenarios, Prometheus."""
