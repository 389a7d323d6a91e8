"""Test helpers: the one place that starts real servers (uvicorn, Redis)."""
