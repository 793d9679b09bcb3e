-- The machine registry as fleets describe machines (docs/registry.md).
--
-- `model` is the designation as the manufacturer writes it (`SY215C`, `PC200-8`, `320 GC`);
-- `machine_class` is one of a closed list and selects the rule book's class table, which a
-- designation's own table may override. Machines registered before this migration keep their
-- `model` (a lower-case id such as `excavator`, still a valid designation) and get the class
-- `machine_class_of(model)` names: the class itself when the old id is one, a class the old id
-- plainly spells (`truck_crane` is a crane, `wheel_loader` a loader), `other` when it spells
-- none. An insert that names no class gets the same (writers of before keep working); the API
-- always says which class a machine has.
--
-- Anomaly models gain a scope: `model` (trained on the machines of one designation, as every
-- model before this migration was) or `class` (on every machine of a class). A machine is
-- scored by its designation's model, else by its class's.

CREATE FUNCTION machine_class_of(model text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN lower(model) IN ('excavator', 'pump_truck', 'mixer_truck', 'crane', 'loader',
                          'bulldozer', 'grader', 'roller', 'piling_rig', 'other')
        THEN lower(model)
    WHEN lower(model) LIKE '%excavator%' THEN 'excavator'
    WHEN lower(model) LIKE '%pump%' THEN 'pump_truck'
    WHEN lower(model) LIKE '%mixer%' THEN 'mixer_truck'
    WHEN lower(model) LIKE '%crane%' THEN 'crane'
    WHEN lower(model) LIKE '%loader%' THEN 'loader'
    WHEN lower(model) LIKE '%dozer%' THEN 'bulldozer'
    WHEN lower(model) LIKE '%grader%' THEN 'grader'
    WHEN lower(model) LIKE '%roller%' THEN 'roller'
    WHEN lower(model) LIKE '%piling%' OR lower(model) LIKE '%drill%' THEN 'piling_rig'
    ELSE 'other'
END;
COMMENT ON FUNCTION machine_class_of(text) IS
    'The class of a machine registered without one, from its model id (migration 008).';

ALTER TABLE machines
    ADD COLUMN machine_class  text,
    ADD COLUMN oem            text,
    ADD COLUMN serial_number  text,
    ADD COLUMN fuel_tank_l    double precision CHECK (fuel_tank_l > 0),
    ADD COLUMN delivered_at   date,
    ADD COLUMN name           text,
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now();

UPDATE machines SET machine_class = machine_class_of(model);

ALTER TABLE machines
    ALTER COLUMN machine_class SET NOT NULL,
    ADD CONSTRAINT machines_class_known CHECK (machine_class IN (
        'excavator', 'pump_truck', 'mixer_truck', 'crane', 'loader', 'bulldozer', 'grader',
        'roller', 'piling_rig', 'other'));

CREATE FUNCTION machines_default_class() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.machine_class IS NULL THEN
        NEW.machine_class := machine_class_of(NEW.model);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER machines_default_class BEFORE INSERT ON machines
    FOR EACH ROW EXECUTE FUNCTION machines_default_class();

-- Training selects the machines of a designation or a class; the list filters by both.
CREATE INDEX machines_model_idx ON machines (model);
CREATE INDEX machines_class_idx ON machines (machine_class);

COMMENT ON COLUMN machines.model IS 'Model designation as the manufacturer writes it (SY215C, PC200-8, 320 GC).';
COMMENT ON COLUMN machines.machine_class IS 'Machine class: selects rules and the fallback anomaly model.';
COMMENT ON COLUMN machines.serial_number IS 'Serial number or PIN (ISO 10261) as the manufacturer stamps it.';
COMMENT ON COLUMN machines.delivered_at IS 'Delivery date: the warranty starts on it.';

ALTER TABLE anomaly_models
    ADD COLUMN scope text NOT NULL DEFAULT 'model' CHECK (scope IN ('model', 'class'));
ALTER TABLE anomaly_models DROP CONSTRAINT anomaly_models_pkey;
ALTER TABLE anomaly_models ADD PRIMARY KEY (scope, model, version);
COMMENT ON COLUMN anomaly_models.scope IS 'model: trained on one designation''s machines; class: on a whole class.';
COMMENT ON TABLE anomaly_models IS 'Trained anomaly models per designation or class; the highest version is in use.';
