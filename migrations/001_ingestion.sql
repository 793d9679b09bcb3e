-- Ingestion schema: machines, engineers, readings, engineer positions, dead letters.
--
-- The table and column names here are a public interface (dashboards query them directly):
-- one column per wire signal, named as on the wire, unit in the name.
--
-- `readings` and `engineer_positions` are TimescaleDB hypertables when the extension is
-- available, and natively range-partitioned by day otherwise. Both shapes have the same columns
-- and the same unique key, so one query layer serves both. Daily partitions are created ahead and
-- dropped after retention by the service (telematics.store.partitions); the default partition only
-- catches rows that arrive before their day's partition exists, and is emptied into it later.

CREATE TABLE machines (
    machine_id     text PRIMARY KEY,
    model          text NOT NULL,
    customer_id    text NOT NULL,
    site_lat       double precision,
    site_lon       double precision,
    site_radius_m  double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((site_lat IS NULL) = (site_lon IS NULL))
);
CREATE INDEX machines_customer_idx ON machines (customer_id);

CREATE TABLE engineers (
    engineer_id  text PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

DO $migration$
DECLARE
    readings_cols text := $cols$
        machine_id            text NOT NULL,
        ts                    timestamptz NOT NULL,
        engine_speed_rpm      double precision,
        oil_pressure_kpa      double precision,
        coolant_temp_c        double precision,
        hydraulic_oil_temp_c  double precision,
        fuel_level_pct        double precision,
        battery_v             double precision,
        engine_hours          double precision,
        lat                   double precision,
        lon                   double precision,
        load_pct              double precision,
        dtc                   jsonb,
        extra                 jsonb,
        PRIMARY KEY (machine_id, ts)
    $cols$;
    positions_cols text := $cols$
        engineer_id  text NOT NULL,
        ts           timestamptz NOT NULL,
        lat          double precision NOT NULL,
        lon          double precision NOT NULL,
        PRIMARY KEY (engineer_id, ts)
    $cols$;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE format('CREATE TABLE readings (%s)', readings_cols);
        EXECUTE format('CREATE TABLE engineer_positions (%s)', positions_cols);
        PERFORM create_hypertable('readings', 'ts', chunk_time_interval => interval '1 day');
        PERFORM create_hypertable('engineer_positions', 'ts',
                                  chunk_time_interval => interval '7 days');
        ALTER TABLE readings SET (timescaledb.compress,
                                  timescaledb.compress_segmentby = 'machine_id',
                                  timescaledb.compress_orderby = 'ts');
        PERFORM add_compression_policy('readings', interval '7 days');
    ELSE
        EXECUTE format('CREATE TABLE readings (%s) PARTITION BY RANGE (ts)', readings_cols);
        EXECUTE format('CREATE TABLE engineer_positions (%s) PARTITION BY RANGE (ts)',
                       positions_cols);
        CREATE TABLE readings_default PARTITION OF readings DEFAULT;
        CREATE TABLE engineer_positions_default PARTITION OF engineer_positions DEFAULT;
    END IF;
END
$migration$;

CREATE TABLE ingest_rejects (
    reject_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT now(),
    topic            text NOT NULL,
    source_id        text,
    payload          bytea NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL,
    replay_of        bigint REFERENCES ingest_rejects (reject_id),
    replay_attempts  integer NOT NULL DEFAULT 0,
    last_replay_at   timestamptz,
    replayed_at      timestamptz
);
CREATE INDEX ingest_rejects_received_idx ON ingest_rejects (received_at);
CREATE INDEX ingest_rejects_pending_idx ON ingest_rejects (reason, reject_id)
    WHERE replayed_at IS NULL;

COMMENT ON TABLE readings IS 'Machine telemetry, one row per (machine_id, ts); columns named as on the wire.';
COMMENT ON COLUMN readings.dtc IS 'Active J1939 fault codes: [{"spn", "fmi", "oc"}], NULL when none.';
COMMENT ON COLUMN readings.extra IS 'Payload keys outside the signal catalogue, kept as sent.';
COMMENT ON TABLE ingest_rejects IS 'Dead letters: payloads or readings refused, with the reason; replayable.';
