"""Work summaries for customers: engine, working and idle hours, fuel, distance, utilisation.

A capability above `api/` (docs/customers.md). `usage` is the pure arithmetic; `store` its SQL;
`rollup` keeps the slot and day tables as batches commit; `queries` answers buckets in any time
zone; `router` and `csv` are its HTTP face; `settings` holds each customer's time zone and shift.
"""
