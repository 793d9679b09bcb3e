-- A per-customer day rollup (docs/customers.md, "Customer days"): the fleet's figures per local
-- day in the customer's zone, summed over its machines' day rows, so that a fleet's per-bucket
-- totals and its 24-hour operating map come from one row a day (30 for a month) instead of one
-- row per machine and day (30,000 for 1,000 machines). Kept by the same writes as
-- `summary_days`: increments are added in the same statement, recomputes (late readings, a zone
-- change) rebuild the customer days they touch from the machine day rows, and a machine that
-- changes customer or tank size rebuilds both customers' days it had rows in (a trigger, below).
--
-- `fuel_used_l` is kept in litres (points x the machine's `fuel_tank_l` / 100 when the rows were
-- written; NULL while no machine with a tank contributed), so a tank change rebuilds it too.
-- The day rows' SQL moves here from the code (`summary_rebuild_days`), so that the trigger and
-- the rollup rebuild machine days one way.

CREATE TABLE summary_customer_days (
    customer_id      text NOT NULL,
    day              date NOT NULL,
    known_s          double precision NOT NULL DEFAULT 0,
    working_s        double precision NOT NULL DEFAULT 0,
    idle_s           double precision NOT NULL DEFAULT 0,
    engine_h         double precision NOT NULL DEFAULT 0,
    fuel_used_pct    double precision NOT NULL DEFAULT 0,
    refuel_pct       double precision NOT NULL DEFAULT 0,
    distance_m       double precision NOT NULL DEFAULT 0,
    meter_anomalies  bigint NOT NULL DEFAULT 0,
    fuel_used_l      double precision,
    first_start      timestamptz,
    last_stop        timestamptz,
    working_by_hour  double precision[] NOT NULL,
    PRIMARY KEY (customer_id, day)
);
COMMENT ON TABLE summary_customer_days IS 'summary_days summed over each customer''s machines per local day in its zone; fuel_used_l in litres by each machine''s fuel_tank_l.';

-- Rebuild one customer's days d0..d1 (one span per customer) from its machines' day rows.
CREATE FUNCTION summary_rebuild_customer_days(customers text[], d0s date[], d1s date[])
RETURNS void LANGUAGE sql AS $$
WITH span AS (SELECT * FROM unnest(customers, d0s, d1s) AS s(customer_id, d0, d1))
DELETE FROM summary_customer_days c USING span
WHERE c.customer_id = span.customer_id AND c.day BETWEEN span.d0 AND span.d1;
WITH span AS (SELECT * FROM unnest(customers, d0s, d1s) AS s(customer_id, d0, d1))
INSERT INTO summary_customer_days (customer_id, day, known_s, working_s, idle_s, engine_h, fuel_used_pct, refuel_pct, distance_m, meter_anomalies, fuel_used_l,
                                   first_start, last_stop, working_by_hour)
SELECT m.customer_id, d.day, sum(d.known_s), sum(d.working_s), sum(d.idle_s), sum(d.engine_h), sum(d.fuel_used_pct), sum(d.refuel_pct), sum(d.distance_m), sum(d.meter_anomalies),
       sum(d.fuel_used_pct * m.fuel_tank_l / 100), min(d.first_start), max(d.last_stop),
       ARRAY[sum(d.working_by_hour[1]),
           sum(d.working_by_hour[2]),
           sum(d.working_by_hour[3]),
           sum(d.working_by_hour[4]),
           sum(d.working_by_hour[5]),
           sum(d.working_by_hour[6]),
           sum(d.working_by_hour[7]),
           sum(d.working_by_hour[8]),
           sum(d.working_by_hour[9]),
           sum(d.working_by_hour[10]),
           sum(d.working_by_hour[11]),
           sum(d.working_by_hour[12]),
           sum(d.working_by_hour[13]),
           sum(d.working_by_hour[14]),
           sum(d.working_by_hour[15]),
           sum(d.working_by_hour[16]),
           sum(d.working_by_hour[17]),
           sum(d.working_by_hour[18]),
           sum(d.working_by_hour[19]),
           sum(d.working_by_hour[20]),
           sum(d.working_by_hour[21]),
           sum(d.working_by_hour[22]),
           sum(d.working_by_hour[23]),
           sum(d.working_by_hour[24])]
FROM summary_days d JOIN machines m USING (machine_id)
JOIN span ON span.customer_id = m.customer_id
WHERE d.day BETWEEN span.d0 AND span.d1
GROUP BY m.customer_id, d.day;
$$;

-- Rebuild the machines' day rows of the local days (in their customers' zones) that [lo, hi]
-- touches, from the slots, then (with_customers) their customers' days over the same local days.
-- Day writes read the zone under a share lock on the customer's settings row (a zone change
-- takes it FOR UPDATE).
CREATE FUNCTION summary_rebuild_days(ids text[], lo timestamptz, hi timestamptz,
                                     with_customers boolean)
RETURNS void LANGUAGE sql AS $$
INSERT INTO customer_settings (customer_id)
SELECT DISTINCT customer_id FROM machines WHERE machine_id = ANY(ids) ON CONFLICT DO NOTHING;
WITH zone AS (
    SELECT m.machine_id, cs.tz FROM machines m JOIN customer_settings cs USING (customer_id)
    WHERE m.machine_id = ANY(ids) FOR SHARE OF cs
), span AS (
    SELECT machine_id, tz, (lo AT TIME ZONE tz)::date AS d0, (hi AT TIME ZONE tz)::date AS d1
    FROM zone
)
DELETE FROM summary_days d USING span
WHERE d.machine_id = span.machine_id AND d.day BETWEEN span.d0 AND span.d1;
WITH zone AS (
    SELECT m.machine_id, cs.tz FROM machines m JOIN customer_settings cs USING (customer_id)
    WHERE m.machine_id = ANY(ids)
), span AS (
    SELECT machine_id, tz, (lo AT TIME ZONE tz)::date AS d0, (hi AT TIME ZONE tz)::date AS d1
    FROM zone
), local AS (
    SELECT s.*, (s.slot AT TIME ZONE span.tz)::date AS day,
           extract(hour FROM s.slot AT TIME ZONE span.tz)::integer AS hr
    FROM summary_slots s JOIN span USING (machine_id)
    WHERE s.slot >= (span.d0::timestamp AT TIME ZONE span.tz)
      AND s.slot < ((span.d1 + 1)::timestamp AT TIME ZONE span.tz)
)
INSERT INTO summary_days (machine_id, day, known_s, working_s, idle_s, engine_h, fuel_used_pct, refuel_pct, distance_m, meter_anomalies, first_start, last_stop, working_by_hour)
SELECT machine_id, day, sum(known_s), sum(working_s), sum(idle_s), sum(engine_h), sum(fuel_used_pct), sum(refuel_pct), sum(distance_m), sum(meter_anomalies), min(first_start), max(last_stop),
       ARRAY[coalesce(sum(working_s) FILTER (WHERE hr = 0), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 1), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 2), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 3), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 4), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 5), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 6), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 7), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 8), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 9), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 10), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 11), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 12), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 13), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 14), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 15), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 16), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 17), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 18), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 19), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 20), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 21), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 22), 0),
           coalesce(sum(working_s) FILTER (WHERE hr = 23), 0)]
FROM local GROUP BY machine_id, day;
WITH span AS (
    SELECT cs.customer_id, min((lo AT TIME ZONE cs.tz)::date) AS d0,
           max((hi AT TIME ZONE cs.tz)::date) AS d1
    FROM machines m JOIN customer_settings cs USING (customer_id)
    WHERE with_customers AND m.machine_id = ANY(ids) GROUP BY cs.customer_id
)
SELECT summary_rebuild_customer_days(array_agg(customer_id), array_agg(d0), array_agg(d1))
FROM span HAVING count(*) > 0;
$$;

-- A machine that changes customer takes its history along (the fleet is its machines as they
-- are registered now, the per-machine table too): its day rows are rebuilt in the new
-- customer's zone where that differs, and both customers' days it had slots in are rebuilt.
-- A tank size change rebuilds its customer's days (litres). One statement's changes at once.
CREATE FUNCTION summary_machines_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    moved text[];
    rezoned text[];
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT array_agg(n.machine_id) INTO moved
    FROM old_rows o JOIN new_rows n USING (machine_id)
    WHERE o.customer_id IS DISTINCT FROM n.customer_id
       OR o.fuel_tank_l IS DISTINCT FROM n.fuel_tank_l;
    IF moved IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT min(slot), max(slot) INTO lo, hi FROM summary_slots WHERE machine_id = ANY(moved);
    IF lo IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO customer_settings (customer_id)
    SELECT customer_id FROM old_rows UNION SELECT customer_id FROM new_rows
    ON CONFLICT DO NOTHING;
    -- The zone-change lock: no day write of these customers interleaves with the rebuild.
    PERFORM 1 FROM customer_settings WHERE customer_id IN (
        SELECT o.customer_id FROM old_rows o WHERE o.machine_id = ANY(moved)
        UNION SELECT n.customer_id FROM new_rows n WHERE n.machine_id = ANY(moved)
    ) ORDER BY customer_id FOR UPDATE;
    SELECT array_agg(n.machine_id) INTO rezoned
    FROM old_rows o JOIN new_rows n USING (machine_id)
    JOIN customer_settings co ON co.customer_id = o.customer_id
    JOIN customer_settings cn ON cn.customer_id = n.customer_id
    WHERE n.machine_id = ANY(moved) AND co.tz <> cn.tz;
    IF rezoned IS NOT NULL THEN
        DELETE FROM summary_days WHERE machine_id = ANY(rezoned);
        PERFORM summary_rebuild_days(rezoned, lo, hi, false);
    END IF;
    PERFORM summary_rebuild_customer_days(array_agg(c.customer_id),
                                          array_agg((lo AT TIME ZONE c.tz)::date),
                                          array_agg((hi AT TIME ZONE c.tz)::date))
    FROM customer_settings c WHERE c.customer_id IN (
        SELECT o.customer_id FROM old_rows o WHERE o.machine_id = ANY(moved)
        UNION SELECT n.customer_id FROM new_rows n WHERE n.machine_id = ANY(moved)
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER summary_machines_changed AFTER UPDATE ON machines
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION summary_machines_changed();

-- The customer days of what is stored already.
WITH span AS (
    SELECT m.customer_id, min(d.day) AS d0, max(d.day) AS d1
    FROM summary_days d JOIN machines m USING (machine_id) GROUP BY m.customer_id
)
SELECT summary_rebuild_customer_days(array_agg(customer_id), array_agg(d0), array_agg(d1))
FROM span HAVING count(*) > 0;
