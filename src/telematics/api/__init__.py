"""HTTP API v1 (FastAPI). Routers raise the package's errors; only `app` maps them to HTTP."""
