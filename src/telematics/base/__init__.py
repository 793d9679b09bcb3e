"""The base layer: what every other part of the service stands on.

Owns the settings (`config`), the database pool and its retry policy (`db`), the error tree
(`errors`), the Prometheus metrics (`metrics`), the migration runner (`migrate`) and the embedded
PostgreSQL and broker used when none is configured (`embedded`).

It may import the pure cores (`diagnosis`, `dispatch`) and `telematics.wire`, and never any other
`telematics` package: the base imports no capability.
"""
