-- Diagnosis schema: alarm episodes grouped into incidents, and trained anomaly models.
--
-- An alarm row is one episode of one fault on one machine: raised, updated while it stays active,
-- cleared. At most one episode per (machine, fault) is open, which the partial unique index
-- enforces, so applying the same engine event twice never opens a second one. Times are reading
-- times (when the machine saw it), not arrival times.
--
-- Related alarms of one machine share an incident: an alarm raised while the machine has an open
-- incident joins it; the incident closes when its last alarm clears.

CREATE TABLE incidents (
    incident_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id    text NOT NULL REFERENCES machines (machine_id),
    opened_at     timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    closed_at     timestamptz,
    severity      text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'info')),
    open_alarms   integer NOT NULL DEFAULT 0 CHECK (open_alarms >= 0)
);
CREATE UNIQUE INDEX incidents_one_open_idx ON incidents (machine_id) WHERE closed_at IS NULL;

CREATE TABLE alarms (
    alarm_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id       text NOT NULL REFERENCES machines (machine_id),
    incident_id      bigint NOT NULL REFERENCES incidents (incident_id),
    fault            text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'cleared')),
    severity         text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'info')),
    title            text NOT NULL,
    signal           text,
    spn              integer,
    fmi              integer,
    raised_at        timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    cleared_at       timestamptz,
    readings         bigint NOT NULL DEFAULT 0,
    first_value      double precision,
    last_value       double precision,
    worst_value      double precision,
    higher_is_worse  boolean NOT NULL DEFAULT true,
    occurrences      integer,
    detail           text NOT NULL DEFAULT '',
    deviations       jsonb,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alarms_one_open_idx ON alarms (machine_id, fault) WHERE state = 'open';
CREATE INDEX alarms_machine_idx ON alarms (machine_id, alarm_id DESC);
CREATE INDEX alarms_open_idx ON alarms (severity, alarm_id DESC) WHERE state = 'open';
CREATE INDEX alarms_raised_idx ON alarms (raised_at);
CREATE INDEX alarms_incident_idx ON alarms (incident_id);

CREATE TABLE anomaly_models (
    model        text NOT NULL,
    version      integer NOT NULL,
    trained_at   timestamptz NOT NULL DEFAULT now(),
    trained_from timestamptz NOT NULL,
    trained_to   timestamptz NOT NULL,
    machines     integer NOT NULL,
    windows      integer NOT NULL,
    summary      jsonb NOT NULL,
    blob         bytea NOT NULL,
    PRIMARY KEY (model, version)
);

COMMENT ON TABLE alarms IS 'Alarm episodes: one per stretch of time a fault is active on a machine.';
COMMENT ON COLUMN alarms.fault IS 'Fault code: a rule (low_oil_pressure, ...), unexplained_anomaly, or dtc_<spn>_<fmi>.';
COMMENT ON COLUMN alarms.readings IS 'Readings (or model windows) that met the condition during the episode.';
COMMENT ON TABLE incidents IS 'Related alarms of one machine, open while any of them is.';
COMMENT ON TABLE anomaly_models IS 'Trained anomaly models per machine model; the highest version is in use.';
