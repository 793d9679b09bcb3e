"""Services on the pure cores: the I/O edge of diagnosis and dispatch, and the jobs beside them.

Owns diagnosis at the edge (`diagnose`: committed batches through the engine, alarm episodes to
the store), dispatching (`dispatching`: the order workflow over the store), the SLA timer worker
(`sla_worker`), anomaly-model training (`training`), alarm notices on MQTT (`notify`) and the
CSV import of field resources (`csvimport`).

It may import `telematics.base`, `telematics.wire`, `telematics.store` and the MQTT adapter of
`telematics.ingest`; never the HTTP API or the composition root.
"""
