"""Ingestion: controller readings from the broker into the store, acknowledged after the commit.

Owns the MQTT adapter (`mqtt`: endpoints, the manual-ack workaround, MQTT 5 properties), the
gateway (`gateway`: receive, batch, write, acknowledge in arrival order) and the pipeline of one
batch (`pipeline`: decode, look up sources, store, dead-letter).

It may import `telematics.base`, `telematics.wire` and `telematics.store`; never the services,
the HTTP API or the composition root. What happens after a commit (diagnosis) is handed in by
the composition root as a callback.
"""
