-- Maintenance plans, completions, item status and status-change records (docs/maintenance.md).
--
-- Plans ship as packaged TOML per machine class with per-model overrides; a plan edited over the
-- API is stored here and takes precedence over the shipped one for the same class or model.
-- `maintenance_done` keeps every completion of a plan item on a machine; the same completion
-- posted twice (same machine, item and time) is one row. `maintenance_status` is the periodic
-- job's latest evaluation of every (machine, item), which the fleet's due list reads; a machine's
-- own maintenance view is computed live. `maintenance_alerts` records each status a plan item
-- reaches (due_soon, due, overdue) once per service cycle, for the notification outbox.

CREATE TABLE maintenance_plans (
    scope       text NOT NULL CHECK (scope IN ('class', 'model')),
    key         text NOT NULL,
    items       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    PRIMARY KEY (scope, key)
);
COMMENT ON TABLE maintenance_plans IS 'Plans edited over the API; they replace the shipped plan of the same class or model.';

CREATE TABLE maintenance_done (
    done_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id    text NOT NULL REFERENCES machines (machine_id),
    item          text NOT NULL,
    done_at       timestamptz NOT NULL,
    engine_hours  double precision NOT NULL CHECK (engine_hours >= 0),
    done_by       text NOT NULL,
    parts_used    jsonb NOT NULL DEFAULT '[]',
    notes         text NOT NULL DEFAULT '',
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (machine_id, item, done_at)
);
COMMENT ON TABLE maintenance_done IS 'Completions of plan items; the latest by done_at resets the item.';

CREATE TABLE maintenance_status (
    machine_id         text NOT NULL REFERENCES machines (machine_id),
    item               text NOT NULL,
    name               text NOT NULL,
    status             text NOT NULL CHECK (status IN ('ok', 'due_soon', 'due', 'overdue')),
    cycle              integer NOT NULL CHECK (cycle >= 0),
    engine_hours       double precision,
    due_at_h           double precision,
    remaining_h        double precision,
    due_date           date,
    forecast_due_date  date,
    usage_h_per_day    double precision,
    computed_at        timestamptz NOT NULL,
    PRIMARY KEY (machine_id, item)
);
CREATE INDEX maintenance_status_due_idx ON maintenance_status (forecast_due_date, machine_id, item);
COMMENT ON TABLE maintenance_status IS 'Each plan item of each machine as the maintenance job last evaluated it.';
COMMENT ON COLUMN maintenance_status.cycle IS 'Completions recorded for the item: a new cycle starts with each.';

CREATE TABLE maintenance_alerts (
    alert_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id   text NOT NULL REFERENCES machines (machine_id),
    item         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('due_soon', 'due', 'overdue')),
    cycle        integer NOT NULL CHECK (cycle >= 0),
    at           timestamptz NOT NULL DEFAULT now(),
    customer_id  text NOT NULL,
    UNIQUE (machine_id, item, cycle, status)
);
CREATE INDEX maintenance_alerts_at_idx ON maintenance_alerts (alert_id);
COMMENT ON TABLE maintenance_alerts IS 'A plan item reached due_soon, due or overdue: once per service cycle and status.';

-- One open planned-maintenance order per machine and item (alarm orders have their own index).
CREATE UNIQUE INDEX orders_one_per_maintenance_idx ON orders (machine_id, fault)
    WHERE alarm_id IS NULL AND fault LIKE 'maintenance:%' AND state NOT IN ('cancelled', 'closed');
