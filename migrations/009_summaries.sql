-- Work summaries for customers (docs/customers.md): per-machine contributions per 15-minute
-- UTC slot, the same summed per local day in the customer's time zone (fast fleet queries),
-- the per-machine tail the incremental rollup carries between batches, and the events the
-- figures come with (refuels, meter anomalies). Each customer's time zone and shift length.
--
-- These are the rollup tables of the design's "no TimescaleDB" shape. With TimescaleDB a
-- continuous aggregate over `readings` could replace `summary_slots`; the query layer reads
-- the same columns either way. Rows are small: one per machine and slot it reported in.

CREATE TABLE customer_settings (
    customer_id          text PRIMARY KEY,
    tz                   text NOT NULL DEFAULT 'UTC',
    shift_hours_per_day  double precision NOT NULL DEFAULT 8
        CHECK (shift_hours_per_day > 0 AND shift_hours_per_day <= 24),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customer_settings IS 'Per customer: IANA time zone of its summaries and its shift hours per day.';

CREATE TABLE summary_slots (
    machine_id       text NOT NULL,
    slot             timestamptz NOT NULL,
    known_s          double precision NOT NULL DEFAULT 0,
    working_s        double precision NOT NULL DEFAULT 0,
    idle_s           double precision NOT NULL DEFAULT 0,
    engine_h         double precision NOT NULL DEFAULT 0,
    fuel_used_pct    double precision NOT NULL DEFAULT 0,
    refuel_pct       double precision NOT NULL DEFAULT 0,
    distance_m       double precision NOT NULL DEFAULT 0,
    meter_anomalies  integer NOT NULL DEFAULT 0,
    first_start      timestamptz,
    last_stop        timestamptz,
    PRIMARY KEY (machine_id, slot)
);
COMMENT ON TABLE summary_slots IS 'Work contributions per machine and 15-minute UTC slot (slot = its start).';

CREATE TABLE summary_days (
    machine_id       text NOT NULL,
    day              date NOT NULL,
    known_s          double precision NOT NULL DEFAULT 0,
    working_s        double precision NOT NULL DEFAULT 0,
    idle_s           double precision NOT NULL DEFAULT 0,
    engine_h         double precision NOT NULL DEFAULT 0,
    fuel_used_pct    double precision NOT NULL DEFAULT 0,
    refuel_pct       double precision NOT NULL DEFAULT 0,
    distance_m       double precision NOT NULL DEFAULT 0,
    meter_anomalies  integer NOT NULL DEFAULT 0,
    first_start      timestamptz,
    last_stop        timestamptz,
    working_by_hour  double precision[] NOT NULL,
    PRIMARY KEY (machine_id, day)
);
COMMENT ON TABLE summary_days IS 'summary_slots summed per local day in the owning customer''s time zone; working_by_hour: working seconds per local hour 0..23.';

CREATE TABLE summary_tails (
    machine_id  text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    state       jsonb NOT NULL
);
COMMENT ON TABLE summary_tails IS 'Newest reading the rollup applied per machine, and the state its formulas carry on from it.';

CREATE TABLE summary_refuels (
    machine_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    added_pct   double precision NOT NULL,
    PRIMARY KEY (machine_id, ts)
);
COMMENT ON TABLE summary_refuels IS 'Refuels: where the rise began and the points of the tank it added.';

CREATE TABLE summary_meter_anomalies (
    machine_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    previous_h  double precision NOT NULL,
    value_h     double precision NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('backwards', 'too_fast')),
    PRIMARY KEY (machine_id, ts)
);
COMMENT ON TABLE summary_meter_anomalies IS 'Engine-hours steps that cannot be true: flagged, never summed.';
