-- The console's live alarm feed asks, every few seconds per open page, which alarms changed
-- lately (updated_at within a window); without this index that is a scan of every alarm.
CREATE INDEX IF NOT EXISTS alarms_updated_idx ON alarms (updated_at);
