-- Customer notifications (docs/notifications.md): events, subscriptions, and the outbox.
--
-- `notice_events` is filled by triggers in the same transaction as the fact it reports (an
-- alarm raised, an order dispatched, arrived or completed), so no fact commits without its
-- event and no hot path calls the notices code. Maintenance events (`maintenance.due_soon`,
-- `maintenance.overdue`) are inserted by the maintenance capability.
--
-- A fan-out job claims unprocessed events (FOR UPDATE SKIP LOCKED), matches the customer's
-- subscriptions and writes one `notice_deliveries` row per (event, subscription): the durable
-- outbox. The unique key makes fan-out idempotent. A delivery job claims due rows, marks them
-- `sending` under a lease, sends, and records `sent` (never sent again) or a retry time, or
-- `failed` after the last attempt. A worker that dies mid-send leaves the row `sending`; once the
-- lease runs out another worker resends that one row (at least once, same `X-Notice-Id`).

CREATE TABLE notice_events (
    event_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    text NOT NULL,
    kind           text NOT NULL CHECK (kind IN (
        'alarm.raised', 'maintenance.due_soon', 'maintenance.overdue',
        'order.dispatched', 'order.arrived', 'order.completed')),
    severity       text CHECK (severity IN ('critical', 'major', 'minor', 'info')),
    subject        jsonb NOT NULL DEFAULT '{}',
    occurred_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    fanned_out_at  timestamptz
);
CREATE INDEX notice_events_pending_idx ON notice_events (event_id) WHERE fanned_out_at IS NULL;
COMMENT ON TABLE notice_events IS 'Facts a customer may be told about; fanned out to subscriptions once.';
COMMENT ON COLUMN notice_events.subject IS 'What the texts need: machine, fault title, order, ETA, engineer, item due.';

CREATE TABLE notice_subscriptions (
    subscription_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'mqtt', 'email')),
    target           text NOT NULL DEFAULT '',
    secret           text,
    kinds            text[] NOT NULL DEFAULT '{}',
    min_severity     text NOT NULL DEFAULT 'info'
        CHECK (min_severity IN ('critical', 'major', 'minor', 'info')),
    language         text NOT NULL DEFAULT 'en' CHECK (language IN ('zh-CN', 'en')),
    tz               text NOT NULL DEFAULT 'UTC',
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    removed_at       timestamptz,
    CHECK ((channel = 'webhook') = (secret IS NOT NULL))
);
CREATE INDEX notice_subscriptions_customer_idx ON notice_subscriptions (customer_id)
    WHERE removed_at IS NULL;
COMMENT ON COLUMN notice_subscriptions.target IS 'The webhook URL or e-mail address; empty for MQTT.';
COMMENT ON COLUMN notice_subscriptions.secret IS 'Webhook HMAC key; write-only through the API.';
COMMENT ON COLUMN notice_subscriptions.kinds IS 'Event kinds wanted; empty means every kind.';

CREATE TABLE notice_deliveries (
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         bigint NOT NULL REFERENCES notice_events (event_id),
    subscription_id  bigint NOT NULL REFERENCES notice_subscriptions (subscription_id),
    customer_id      text NOT NULL,
    channel          text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    claimed_by       text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (event_id, subscription_id),
    CHECK (status <> 'sending' OR lease_until IS NOT NULL)
);
CREATE INDEX notice_deliveries_due_idx ON notice_deliveries (next_attempt_at)
    WHERE status = 'queued';
CREATE INDEX notice_deliveries_lease_idx ON notice_deliveries (lease_until)
    WHERE status = 'sending';
CREATE INDEX notice_deliveries_customer_idx ON notice_deliveries (customer_id, delivery_id DESC);
COMMENT ON TABLE notice_deliveries IS 'The durable outbox: one row per (event, subscription).';
COMMENT ON COLUMN notice_deliveries.payload IS 'The rendered notice; every attempt sends the same.';
COMMENT ON COLUMN notice_deliveries.attempts IS 'Attempts begun; also the fencing token of the current lease.';

CREATE FUNCTION notice_alarm_raised() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    m machines%ROWTYPE;
BEGIN
    SELECT * INTO m FROM machines WHERE machine_id = NEW.machine_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO notice_events (customer_id, kind, severity, subject, occurred_at)
    VALUES (m.customer_id, 'alarm.raised', NEW.severity,
            jsonb_build_object(
                'alarm_id', NEW.alarm_id, 'machine_id', NEW.machine_id,
                'machine_name', m.name, 'model', m.model, 'fault', NEW.fault,
                'title', NEW.title, 'detail', NEW.detail),
            NEW.raised_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER notice_alarm_raised AFTER INSERT ON alarms
    FOR EACH ROW EXECUTE FUNCTION notice_alarm_raised();

-- The order row is updated before its event is appended (store/orders.py), so the trigger reads
-- the order as the transition left it: ETA and engineer of a dispatch or transfer.
CREATE FUNCTION notice_order_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
    kind text;
    engineer_name text;
    machine_name text;
BEGIN
    kind := CASE
        WHEN NEW.to_state = 'dispatched' AND NEW.action IN ('dispatch', 'transfer')
            THEN 'order.dispatched'
        WHEN NEW.to_state = 'on_site' AND NEW.from_state IS DISTINCT FROM 'on_site'
            THEN 'order.arrived'
        WHEN NEW.to_state = 'completed' AND NEW.from_state IS DISTINCT FROM 'completed'
            THEN 'order.completed'
    END;
    IF kind IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO o FROM orders WHERE order_id = NEW.order_id;
    SELECT e.name INTO engineer_name FROM engineers e WHERE e.engineer_id = o.engineer_id;
    SELECT m.name INTO machine_name FROM machines m WHERE m.machine_id = o.machine_id;
    INSERT INTO notice_events (customer_id, kind, severity, subject, occurred_at)
    VALUES (o.customer_id, kind, o.severity,
            jsonb_build_object(
                'order_id', o.order_id, 'machine_id', o.machine_id,
                'machine_name', machine_name, 'alarm_id', o.alarm_id, 'fault', o.fault,
                'eta', o.eta, 'engineer_id', o.engineer_id, 'engineer_name', engineer_name,
                'action', NEW.action),
            NEW.at);
    RETURN NULL;
END
$$;
CREATE TRIGGER notice_order_event AFTER INSERT ON order_events
    FOR EACH ROW EXECUTE FUNCTION notice_order_event();
