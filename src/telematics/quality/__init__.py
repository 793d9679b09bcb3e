"""Service quality: the monitoring desk, surveys, the satisfaction index and service KPIs.

The top capability above `api/` (docs/service-quality.md). Its routers are mounted by
`telematics.web`. Pure modules (`plspm`, `bootstrap`, `periods`, `kpis`, `instrument`) import
no I/O library; the `*_store` modules hold its SQL; the `*_api` modules its routes.
"""
