-- Which gateway worker (its MQTT client id) diagnosed each machine last. With several workers
-- on one shared subscription a machine's readings may reach any of them, and a worker's
-- in-memory rule state for a machine is only current while no other worker diagnosed it since:
-- a worker that finds another's name here rebuilds the machine's state from the store first.
-- Written only when the diagnosing worker changes, under a per-machine advisory lock held for
-- the diagnosis transaction, so two workers never diagnose one machine at the same time.
CREATE TABLE diagnosis_marks (
    machine_id text PRIMARY KEY,
    source     text NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
