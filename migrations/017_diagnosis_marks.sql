-- Which gateway worker (its MQTT client id) diagnosed each machine last, and the latest reading
-- time diagnosed. With several workers on one shared subscription a machine's readings may
-- reach any of them, and a worker's in-memory rule state for a machine is only current while no
-- other worker diagnosed it since: a worker that finds another's name here rebuilds the
-- machine's state from the store first, up to `ts_ms`, so that readings older than what was
-- diagnosed elsewhere are treated as late, not as news. Written with each diagnosis, under a
-- lock on the machine's row held for its transaction: one diagnosis of a machine at a time.
CREATE TABLE diagnosis_marks (
    machine_id text PRIMARY KEY,
    source     text NOT NULL,
    ts_ms      bigint NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
