"""Where a snapshot comes from: bundled scenarios, this host, an upload, Prometheus."""
