"""Telematics service: the product's edge, in layers, and its composition root.

From the bottom up: `wire` (the pure decoder of wire contract v1), `base` (settings, database
pool, errors, metrics, migrations, embedded defaults), `store` (every SQL statement), `ingest`
(MQTT adapter, gateway, pipeline), `services` (diagnosis at the edge, dispatching, SLA timers,
training, notices, CSV import) and `api` (the HTTP API). A package imports only those below it;
`scripts/check_layers.py` enforces the order. The modules at this root (`service`, `demo`,
`__main__`) are the composition root: the one place that chooses and wires the concrete parts.

This package imports `diagnosis` and `dispatch`; nothing imports it.
"""
