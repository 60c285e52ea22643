"""Quorum's HTTP API (FastAPI + uvicorn): `python -m engine serve`. See docs/api.md."""
