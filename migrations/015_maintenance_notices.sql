-- Maintenance reminders reach the customers' notifications: each status change the maintenance
-- job records in `maintenance_alerts` (once per service cycle and status, migration 010) becomes a
-- `notice_events` row (migration 011) in the same transaction, like alarms and order events do.
--
-- `due_soon` and `due` are both told as `maintenance.due_soon` (the item is due now or shortly;
-- the subject's `status` says which), `overdue` as `maintenance.overdue`. The subject carries
-- what the texts show: the machine, the item's name and when it falls due, by date and by hours.
CREATE FUNCTION notice_maintenance_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    m machines%ROWTYPE;
    s maintenance_status%ROWTYPE;
BEGIN
    SELECT * INTO m FROM machines WHERE machine_id = NEW.machine_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO s FROM maintenance_status WHERE machine_id = NEW.machine_id AND item = NEW.item;
    INSERT INTO notice_events (customer_id, kind, severity, subject, occurred_at)
    VALUES (NEW.customer_id,
            CASE NEW.status WHEN 'overdue' THEN 'maintenance.overdue'
                            ELSE 'maintenance.due_soon' END,
            NULL,
            jsonb_strip_nulls(jsonb_build_object(
                'alert_id', NEW.alert_id, 'machine_id', NEW.machine_id,
                'machine_name', m.name, 'model', m.model,
                'item_id', NEW.item, 'item', coalesce(s.name, NEW.item),
                'status', NEW.status, 'cycle', NEW.cycle,
                'due_at', s.due_date, 'due_engine_hours', s.due_at_h,
                'forecast_due_date', s.forecast_due_date)),
            NEW.at);
    RETURN NULL;
END
$$;
CREATE TRIGGER notice_maintenance_alert AFTER INSERT ON maintenance_alerts
    FOR EACH ROW EXECUTE FUNCTION notice_maintenance_alert();
