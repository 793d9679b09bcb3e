"""Wire contract v1, decoded: payload bytes in, columns and refusals out, with no I/O at all.

Owns the decoder (`decode`: topics, JSON, limits, validation against the signal catalogue) and
the values it yields (`decoded`: reading and position columns, `Reject` and its reasons,
`DecodedBatch`). It sits under the store, which holds what it yields, and under ingestion,
which feeds it bytes.

Pure, like `diagnosis`: it may import `diagnosis` (the signal catalogue) and never another
`telematics` package, asyncio, a database or network library, or pydantic.
"""
