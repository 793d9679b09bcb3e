-- Service quality (docs/service-quality.md): the monitoring desk's tasks, survey answers, the
-- survey instrument, and machines' regions.
--
-- A desk task is made by the SLA timer runner in the transaction that records the timer's
-- verdict; `timer_id` is unique, so one timer makes at most one task, however many runners
-- claim timers and however often they restart.

-- The monitoring desk's own role: reads orders and machines, works desk tasks, records surveys;
-- never acts on alarms or orders (docs/service-quality.md, "Roles").
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'expert', 'engineer', 'customer', 'monitor'));

ALTER TABLE machines ADD COLUMN region text;
COMMENT ON COLUMN machines.region IS 'Service region (KPIs and the satisfaction index by region); NULL: none.';
CREATE INDEX machines_region_idx ON machines (region) WHERE region IS NOT NULL;

CREATE TABLE desk_tasks (
    task_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timer_id         bigint NOT NULL UNIQUE REFERENCES sla_timers (timer_id),
    order_id         bigint NOT NULL REFERENCES orders (order_id),
    kind             text NOT NULL CHECK (kind IN ('callback_check', 'arrival_escalation',
                                                   'completion_escalation', 'post_completion_callback')),
    verdict          text NOT NULL,
    escalation       boolean NOT NULL,
    ask              text NOT NULL,
    due_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
    notified_line    integer,
    reached          boolean,
    said             text,
    follow_up        text,
    engineer_called  boolean,
    service_failure  boolean NOT NULL DEFAULT false,
    done_at          timestamptz,
    done_by          text,
    CHECK ((state = 'done') = (done_at IS NOT NULL))
);
CREATE INDEX desk_tasks_open_idx ON desk_tasks (due_at, task_id) WHERE state = 'open';
CREATE INDEX desk_tasks_due_idx ON desk_tasks (due_at, task_id);
CREATE INDEX desk_tasks_order_idx ON desk_tasks (order_id);
COMMENT ON TABLE desk_tasks IS 'Monitoring desk work made from SLA timers that came due; one per timer.';
COMMENT ON COLUMN desk_tasks.service_failure IS 'A callback found the engineer never called the customer.';

CREATE TABLE surveys (
    survey_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  text NOT NULL,
    order_id     bigint REFERENCES orders (order_id),
    region       text,
    engineer_id  text,
    answered_at  timestamptz NOT NULL,
    channel      text NOT NULL,
    answers      jsonb NOT NULL,
    recorded_by  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX surveys_answered_idx ON surveys (answered_at);
CREATE INDEX surveys_customer_idx ON surveys (customer_id, answered_at);
COMMENT ON COLUMN surveys.answers IS 'Item -> score 1..10 as answered; items left out were not answered.';

CREATE TABLE satisfaction_instruments (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc         jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);
COMMENT ON TABLE satisfaction_instruments IS 'Survey instruments put over the API; the highest version is in use, the shipped TOML before any.';

-- KPIs select orders by creation and completion time, alarms by resolution time.
CREATE INDEX orders_created_idx ON orders (created_at);
CREATE INDEX orders_machine_fault_idx ON orders (machine_id, fault, created_at);
CREATE INDEX alarms_resolved_idx ON alarms (resolved_at) WHERE resolved_at IS NOT NULL;

-- One survey per order: the post-completion callback's answers, from the desk or the customer.
CREATE UNIQUE INDEX surveys_one_per_order_idx ON surveys (order_id) WHERE order_id IS NOT NULL;
