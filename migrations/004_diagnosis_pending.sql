-- Committed batches whose readings are not yet diagnosed, so that a crash between a batch's
-- commit and its diagnosis costs no alarm: the row is written in the batch's own transaction
-- and deleted once the diagnoser has stored the batch's alarm changes. On start, a diagnoser
-- diagnoses what its gateway (`source`, the MQTT client id) left here; readings stored by a
-- dead-letter replay come with source 'replay' and are claimed by whichever diagnoser runs.
-- Rows are few: only batches between commit and diagnosis, plus those of a crash.
CREATE TABLE diagnosis_pending (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    machine_ids  text[] NOT NULL,
    first_ts_ms  bigint NOT NULL,
    last_ts_ms   bigint NOT NULL
);
CREATE INDEX diagnosis_pending_source_idx ON diagnosis_pending (source, seq);
