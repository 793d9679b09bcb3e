-- Service workflow: API tokens and roles, field resources (engineers, warehouses, parts, stock),
-- the expert workflow on alarms, service orders with their audit trail, part reservations, and
-- durable SLA timers.
--
-- Stock is counted per location (an engineer's van or a warehouse) and part: `quantity` on hand,
-- `reserved` promised to dispatched orders. Reserving is one conditional UPDATE per line
-- (quantity - reserved >= wanted), so two concurrent dispatches can never promise the same unit.

CREATE TABLE api_tokens (
    token_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'expert', 'engineer', 'customer')),
    subject_id   text NOT NULL,
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
COMMENT ON COLUMN api_tokens.token_hash IS 'SHA-256 of the bearer token; the token itself is never stored.';
COMMENT ON COLUMN api_tokens.subject_id IS 'Who the token speaks for: the engineer_id, the customer_id, or the expert or admin name.';

ALTER TABLE engineers
    ADD COLUMN skills          text[] NOT NULL DEFAULT '{}',
    ADD COLUMN home_lat        double precision,
    ADD COLUMN home_lon        double precision,
    ADD COLUMN shift_start     time,
    ADD COLUMN shift_end       time,
    ADD COLUMN shift_tz        text NOT NULL DEFAULT 'UTC',
    ADD COLUMN status          text NOT NULL DEFAULT 'available'
        CHECK (status IN ('available', 'busy', 'off')),
    ADD COLUMN max_orders      integer NOT NULL DEFAULT 3 CHECK (max_orders >= 0),
    ADD COLUMN speed_kmh       double precision NOT NULL DEFAULT 50 CHECK (speed_kmh > 0),
    ADD CONSTRAINT engineers_home_both CHECK ((home_lat IS NULL) = (home_lon IS NULL));

CREATE TABLE warehouses (
    warehouse_id  text PRIMARY KEY,
    name          text NOT NULL,
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE parts (
    part_no     text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stock (
    location_kind  text NOT NULL CHECK (location_kind IN ('van', 'warehouse')),
    location_id    text NOT NULL,
    part_no        text NOT NULL REFERENCES parts (part_no),
    quantity       integer NOT NULL CHECK (quantity >= 0),
    reserved       integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location_kind, location_id, part_no),
    CHECK (reserved <= quantity)
);
CREATE INDEX stock_part_idx ON stock (part_no) WHERE quantity > reserved;

-- The expert workflow on alarms: confirm or correct the diagnosis, notes, remote resolution,
-- escalation between support lines. Corrections are kept for retraining.
ALTER TABLE alarms
    ADD COLUMN confirmed_fault  text,
    ADD COLUMN resolution       text CHECK (resolution IN ('remote', 'dispatched', 'no_fault')),
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN resolved_by      text,
    ADD COLUMN support_line     integer NOT NULL DEFAULT 1 CHECK (support_line BETWEEN 1 AND 3);
COMMENT ON COLUMN alarms.confirmed_fault IS 'The fault an expert confirmed or corrected it to; differs from fault when corrected.';

CREATE TABLE alarm_events (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id   bigint NOT NULL REFERENCES alarms (alarm_id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_alarm_idx ON alarm_events (alarm_id, event_id);

CREATE TABLE orders (
    order_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id            bigint REFERENCES alarms (alarm_id),
    machine_id          text NOT NULL REFERENCES machines (machine_id),
    customer_id         text NOT NULL,
    state               text NOT NULL,
    severity            text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'info')),
    fault               text,
    skills              text[] NOT NULL DEFAULT '{}',
    parts               jsonb NOT NULL DEFAULT '[]',
    site_lat            double precision NOT NULL,
    site_lon            double precision NOT NULL,
    engineer_id         text REFERENCES engineers (engineer_id),
    pickup_warehouse_id text REFERENCES warehouses (warehouse_id),
    plan                jsonb,
    eta                 timestamptz,
    doc                 jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    dispatched_at       timestamptz,
    accepted_at         timestamptz,
    arrived_at          timestamptz,
    completed_at        timestamptz,
    closed_at           timestamptz,
    version             integer NOT NULL DEFAULT 0
);
COMMENT ON COLUMN orders.doc IS 'The order as the state machine (dispatch.orders.Order) holds it; the other columns are copies for queries.';
CREATE INDEX orders_state_idx ON orders (state, order_id DESC);
CREATE INDEX orders_engineer_idx ON orders (engineer_id, order_id DESC);
CREATE INDEX orders_customer_idx ON orders (customer_id, order_id DESC);
CREATE UNIQUE INDEX orders_one_per_alarm_idx ON orders (alarm_id)
    WHERE state NOT IN ('cancelled', 'closed');

CREATE TABLE order_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (order_id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX order_events_order_idx ON order_events (order_id, event_id);

CREATE TABLE order_reservations (
    order_id       bigint NOT NULL REFERENCES orders (order_id),
    location_kind  text NOT NULL,
    location_id    text NOT NULL,
    part_no        text NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, location_kind, location_id, part_no)
);

CREATE TABLE sla_timers (
    timer_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timer_key   text NOT NULL UNIQUE,
    order_id    bigint NOT NULL REFERENCES orders (order_id),
    kind        text NOT NULL,
    anchor_at   timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired')),
    fired_at    timestamptz,
    fired_by    text,
    verdict     text CHECK (verdict IN ('breach', 'satisfied', 'moot', 'due')),
    detail      text
);
CREATE INDEX sla_timers_order_idx ON sla_timers (order_id);
CREATE INDEX sla_timers_due_idx ON sla_timers (due_at) WHERE state = 'pending';
CREATE INDEX sla_timers_breach_idx ON sla_timers (fired_at DESC) WHERE verdict = 'breach';
COMMENT ON TABLE sla_timers IS 'Durable service-level timers; workers claim due ones with FOR UPDATE SKIP LOCKED.';
