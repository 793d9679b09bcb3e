"""Prometheus metrics of the service, on a registry of its own (not the process-global one), so
tests and several in-process services do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "telematics_mqtt_messages_received", "MQTT messages received", registry=r
        )
        self.readings_stored = Counter(
            "telematics_readings_stored", "Readings newly stored", registry=r
        )
        self.readings_duplicate = Counter(
            "telematics_readings_duplicate",
            "Readings absorbed as repeats of a stored (machine_id, ts)",
            registry=r,
        )
        self.positions_stored = Counter(
            "telematics_positions_stored", "Engineer positions newly stored", registry=r
        )
        self.rejects = Counter(
            "telematics_ingest_rejects",
            "Payloads or readings dead-lettered",
            ["reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "telematics_batch_seconds",
            "Time to decode and commit one batch",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_messages = Histogram(
            "telematics_batch_messages",
            "Messages per committed batch",
            buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.lag_seconds = Histogram(
            "telematics_ingest_lag_seconds",
            "From receipt of a message to the commit of its batch",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.db_retries = Counter(
            "telematics_db_write_retries",
            "Batch writes retried after a database failure",
            registry=r,
        )
        self.batch_splits = Counter(
            "telematics_batch_splits",
            "Batches split in two: too many readings, past the command timeout, or refused",
            registry=r,
        )
        self.unacked = Gauge(
            "telematics_unacked_messages", "Messages received but not yet acknowledged", registry=r
        )
        self.mqtt_connected = Gauge(
            "telematics_mqtt_connected", "1 while the gateway holds a broker session", registry=r
        )
        self.mqtt_reconnects = Counter(
            "telematics_mqtt_reconnects", "Broker connections lost and retried", registry=r
        )
        self.last_commit_timestamp = Gauge(
            "telematics_last_commit_timestamp_seconds",
            "Unix time of the last committed batch",
            registry=r,
        )

        self.alarms = Counter(
            "telematics_alarms",
            "Alarm episodes raised and cleared",
            ["transition", "severity"],
            registry=r,
        )
        self.diagnosis_seconds = Histogram(
            "telematics_diagnosis_seconds",
            "Time to diagnose one committed batch and store its alarm changes",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.diagnosis_backlog = Gauge(
            "telematics_diagnosis_backlog_readings",
            "Committed readings waiting for diagnosis",
            registry=r,
        )
        self.diagnosis_restore_left = Gauge(
            "telematics_diagnosis_restore_left_machines",
            "Recently active machines still to be restored after a start (between batches)",
            registry=r,
        )
        self.dtc_suppressed = Counter(
            "telematics_dtc_suppressed",
            "Fault-code reports (a reading's code) that opened no episode: [dtc] max_open held",
            registry=r,
        )
        self.diagnosis_failures = Counter(
            "telematics_diagnosis_failures",
            "Batches whose diagnosis failed (state is rebuilt from the store)",
            registry=r,
        )
        self.alarm_notices_dropped = Counter(
            "telematics_alarm_notices_dropped",
            "Alarm notices for on-board displays dropped because the publisher fell behind",
            registry=r,
        )

        self.sla_timers = Counter(
            "telematics_sla_timers",
            "SLA timers fired, by kind and verdict (breach, satisfied, moot, due)",
            ["kind", "verdict"],
            registry=r,
        )
        # Read replicas (base/replica.py): -1 while the lag is unknown (replica unreachable).
        self.replica_lag_seconds = Gauge(
            "telematics_db_replica_lag_seconds",
            "How far the read replica's replay is behind, in time (0 when it has replayed "
            "everything it received); -1: unknown",
            registry=r,
        )
        self.replica_lag_bytes = Gauge(
            "telematics_db_replica_lag_bytes",
            "WAL the read replica has not replayed yet, against the primary's position; "
            "-1: unknown",
            registry=r,
        )
        self.replica_reads = Counter(
            "telematics_db_replica_reads",
            "Read-only API requests by the database they were sent to (replica or primary)",
            ["target"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
