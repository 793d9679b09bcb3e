"""Maintenance plans with forecasts: plan items per machine class and model, completions, each
item's due point and status, a forecast from the machine's usage rate, planned service orders,
and the status changes the notification outbox picks up (docs/maintenance.md).

Pure modules (`plan`, `book`, `schedule`, `usage`) hold the definitions and formulas and import
no I/O library; the store modules (`plan_store`, `completions`, `counters`, `status_store`) hold
the SQL; `evaluation` puts them together, `job` keeps the fleet's status table and the alerts
current, and `router` serves them over HTTP.
"""
