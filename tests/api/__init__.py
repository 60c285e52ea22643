"""The HTTP API (engine/api/): routes, alerts, notifiers, /metrics."""
