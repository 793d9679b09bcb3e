"""Settings: read once from `TELEMATICS_*` environment variables into one frozen value.

This is the only module that reads the environment. Everything else receives a `Settings` (or
the part of it it needs) from the composition root in `telematics.app`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatch.sla import SlaPolicy
from telematics.wire.decode import Limits

MqttProtocol = Literal["5", "3.1.1"]


class Settings(BaseSettings):
    """Service settings. Every field maps to `TELEMATICS_<FIELD>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="TELEMATICS_", frozen=True, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:pass@host:port/db. Unset: embedded PostgreSQL.",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://[user:pass@]host:port. Unset: an embedded MQTT broker is started.",
    )
    mqtt_protocol: MqttProtocol = "5"
    embedded_db_port: int = Field(
        default=15432,
        ge=0,
        le=65535,
        description="TCP port of the embedded PostgreSQL on 127.0.0.1 (the next free one if "
        "taken, said in a warning; 0: any free port).",
    )
    embedded_mqtt_port: int = Field(
        default=11883,
        ge=0,
        le=65535,
        description="Port of the embedded MQTT broker on 127.0.0.1 (the next free one if taken, "
        "said in a warning; 0: any free port).",
    )
    mqtt_client_id: str = "telematics-gateway"
    mqtt_shared_group: str | None = Field(
        default=None, description="MQTT 5 shared-subscription group; set to split across workers."
    )
    mqtt_receive_maximum: int = Field(
        default=8000,
        ge=20,
        le=65535,
        description=(
            "MQTT 5 Receive Maximum: unacked messages the broker may have in flight to us. "
            "Memory is bounded by this times the payload size (typically 1-3 KB)."
        ),
    )
    mqtt_broker_inflight_311: int = Field(
        default=20,
        ge=1,
        le=65535,
        description="MQTT 3.1.1 only: the broker's max_inflight_messages (Mosquitto: 20).",
    )
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin. Unset: one is generated into the data folder.",
    )
    data_dir: Path = Field(
        default=Path(".telematics"),
        description="Folder for the embedded database and the generated admin token.",
    )
    batch_max_messages: int = Field(default=1000, ge=1)
    batch_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Payload bytes per database batch: a batch closes when it holds this many.",
    )
    batch_max_readings: int = Field(
        default=100_000,
        ge=1,
        description="Readings per transaction: a batch that decodes to more is stored in halves.",
    )
    batch_max_delay_ms: int = Field(default=50, ge=1)
    batches_in_flight: int = Field(default=2, ge=1, le=8)
    db_ingest_pool_size: int = Field(
        default=4, ge=2, description="Connections of the gateway's writers and source lookups."
    )
    db_api_pool_size: int = Field(default=4, ge=1, description="Connections of the HTTP API.")
    db_jobs_pool_size: int = Field(
        default=3, ge=1, description="Connections of diagnosis, SLA timers and upkeep."
    )
    database_replica_url: SecretStr | None = Field(
        default=None,
        description="A streaming replica the API's reads go to (readings, summaries, alarm "
        "queue, AEMP feed); writes never do. Unset: everything on the primary.",
    )
    db_replica_pool_size: int = Field(
        default=4, ge=1, description="Connections of the API to the read replica."
    )
    database_replica_max_lag_s: float = Field(
        default=30.0,
        gt=0,
        description="Reads go to the primary while the replica is further behind, or unknown.",
    )
    database_replica_sticky_s: float = Field(
        default=10.0,
        ge=0,
        description="After a caller's write, its reads go to the primary for this long.",
    )
    token_cache_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How long the API trusts its copy of the tokens: revocations elsewhere "
        "take effect within this.",
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the web console's session cookies; random at each start "
        "when unset (sessions end with the process). Set the same value on every process that "
        "serves the API.",
    )
    console_session_s: int = Field(
        default=12 * 3600, ge=60, le=30 * 24 * 3600, description="How long a console sign-in lasts."
    )
    console_poll_s: float = Field(
        default=2.0,
        ge=0.2,
        le=60,
        description="How often a console event stream looks for alarm changes.",
    )
    console_stream_s: float = Field(
        default=300.0,
        ge=5,
        le=3600,
        description="How long one console event stream lasts before the browser reconnects.",
    )
    console_streams_max: int = Field(
        default=64, ge=1, le=10_000, description="Console event streams one process holds at most."
    )
    console_tile_url: str | None = Field(
        default=None,
        description="A map tile server the console's map may draw under its points, as "
        "`https://host/{z}/{x}/{y}.png` (Web Mercator tiles); unset: no tiles, nothing leaves "
        "the host.",
    )
    console_tile_attribution: str = Field(
        default="", max_length=200, description="The credit the tile server asks to be shown."
    )
    http_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies are refused (413)."
    )
    http_max_import_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="The same for CSV imports."
    )
    db_timeout_s: float = Field(default=30.0, gt=0)
    retention_days: int = Field(default=30, ge=1)
    partitions_ahead_days: int = Field(default=3, ge=1)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    max_readings_per_message: int = Field(default=1000, ge=1)
    max_dtcs_per_message: int = Field(default=100, ge=1)
    future_tolerance_s: int = Field(default=300, ge=0)
    log_level: str = "INFO"
    diagnosis_enabled: bool = Field(
        default=True, description="Run the diagnosis engine on every committed batch."
    )
    rules_path: Path | None = Field(
        default=None, description="A rules TOML to use instead of the packaged thresholds."
    )
    knowledge_path: Path | None = Field(
        default=None, description="A knowledge-base TOML to use instead of the packaged one."
    )
    diagnosis_history_s: int = Field(
        default=900,
        ge=60,
        description="Seconds of a machine's readings replayed to rebuild its diagnosis state.",
    )
    alarm_notices: bool = Field(
        default=True, description="Publish alarm changes on machines/{machine_id}/alarms."
    )
    summaries_enabled: bool = Field(
        default=True,
        description="Keep the work-summary rollups as batches commit (needs diagnosis enabled).",
    )
    summary_max_gap_s: int = Field(
        default=300,
        ge=1,
        le=900,
        description="Longest gap between readings counted as known time in work summaries.",
    )
    summary_flush_s: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="Work-summary increments are written at most this often (batches are"
        " marked diagnosed once written, so a restart feeds up to this much again).",
    )
    summary_flush_readings: int = Field(
        default=300_000,
        ge=1,
        description="... or once this many readings are buffered (they stay in memory until).",
    )
    sla_callback_s: int = Field(
        default=15 * 60, ge=1, description="After a dispatch, by when the customer is called."
    )
    sla_complete_within_h: float = Field(
        default=48.0, gt=0, description="Orders not completed within this are escalated."
    )
    sla_survey_after_h: float = Field(
        default=24.0, gt=0, description="After completion, when the satisfaction call is due."
    )
    sla_check_interval_s: float = Field(
        default=5.0, gt=0, description="How often due SLA timers are looked for."
    )
    maintenance_lead_h: float = Field(
        default=50.0, ge=0, le=10_000, description="A plan item is due_soon this many hours ahead."
    )
    maintenance_lead_days: int = Field(
        default=14, ge=0, le=365, description="A plan item is due_soon this many days ahead."
    )
    maintenance_overdue_fraction: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Overdue past the due point by this part of the interval.",
    )
    maintenance_usage_weeks: int = Field(
        default=4, ge=1, le=8, description="Weeks of readings the usage rate is measured over."
    )
    maintenance_check_interval_s: float = Field(
        default=600.0, gt=0, description="How often the maintenance job evaluates the fleet."
    )
    maintenance_hours_margin_h: float = Field(
        default=24.0,
        ge=0,
        le=10_000,
        description="A completion may name at most this many hours above the machine's counter.",
    )

    notices_enabled: bool = Field(
        default=True, description="Run the customer notifications job (fan-out and delivery)."
    )
    notice_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="Pause of the notifications job when idle."
    )
    notice_lease_s: float = Field(
        default=120.0,
        ge=1,
        le=86400,
        description="A notice being sent is sent again after this if its worker vanished.",
    )
    notice_retry_base_s: float = Field(
        default=5.0, gt=0, le=86400, description="Wait after a notice's first failed attempt."
    )
    notice_retry_max_s: float = Field(
        default=3600.0, gt=0, le=7 * 86400, description="Longest wait between two attempts."
    )
    notice_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts of a notice before it is failed."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Bound of one webhook attempt, end to end."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs on loopback, private or link-local addresses.",
    )
    webhook_max_response_bytes: int = Field(
        default=64 * 1024, ge=0, le=16 * 1024 * 1024, description="Webhook answer bytes read."
    )
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no e-mail.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = Field(default="telematics@localhost", description="The From address.")
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=120)
    aemp_prefix: str = Field(
        default="/aemp",
        pattern=r"^(/[A-Za-z0-9._~-]+)+$",
        description="Path the ISO 15143-3 (AEMP 2.0) feed is served under (no trailing /).",
    )
    aemp_token_ttl_s: int = Field(
        default=3600, ge=60, le=86_400, description="Lifetime of an AEMP access token."
    )
    aemp_rate_per_s: float = Field(
        default=10.0, gt=0, le=10_000, description="AEMP requests a second per client (refill)."
    )
    aemp_burst: int = Field(
        default=50, ge=1, le=100_000, description="AEMP requests a client may make at once."
    )
    aemp_max_range_days: int = Field(
        default=31, ge=1, le=366, description="Longest time range of one AEMP series request."
    )
    aemp_pull_enabled: bool = Field(
        default=True, description="Poll the configured AEMP sources of other brands."
    )
    aemp_pull_check_s: float = Field(
        default=30.0, gt=0, le=3600, description="How often due AEMP sources are looked for."
    )

    desk_escalate_to_line: int = Field(
        default=2,
        ge=0,
        le=3,
        description="Support line a desk escalation hands the order's alarm to; 0: none.",
    )
    desk_callback_grace_min: float = Field(
        default=15.0,
        gt=0,
        le=24 * 60,
        description="A callback check made within this of coming due counts as made on time.",
    )
    tracking_off_site_m: float = Field(
        default=500.0,
        gt=0,
        le=100_000,
        description="An arrival reported farther than this from the site is flagged.",
    )
    satisfaction_min_n: int = Field(
        default=30, ge=5, le=100_000, description="Fewer answers in a period: no index."
    )
    satisfaction_bootstrap: int = Field(
        default=200, ge=0, le=5000, description="Bootstrap resamples of the index's 95% CI."
    )
    satisfaction_instrument_path: Path | None = Field(
        default=None, description="A survey instrument TOML to ship instead of the packaged one."
    )
    gateway_enabled: bool = Field(
        default=True,
        description="Take telemetry from the broker here. Off: this copy serves the HTTP API and "
        "runs the background jobs only (docs/operations.md, 'Production deployment').",
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_is_mqtt(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
                raise ValueError("TELEMATICS_MQTT_URL must look like mqtt://host:port")
        return value

    @field_validator("console_tile_url")
    @classmethod
    def _tile_url_is_a_template(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("TELEMATICS_CONSOLE_TILE_URL must be an http(s) URL")
            if not all(f"{{{k}}}" in value for k in "zxy"):
                raise ValueError("TELEMATICS_CONSOLE_TILE_URL needs {z}, {x} and {y}")
        return value

    def sla_policy(self) -> SlaPolicy:
        """The service levels these settings describe (arrival deadlines stay by severity)."""
        return SlaPolicy(
            callback_after=timedelta(seconds=self.sla_callback_s),
            complete_within=timedelta(hours=self.sla_complete_within_h),
            survey_after=timedelta(hours=self.sla_survey_after_h),
        )

    def limits(self) -> Limits:
        """The payload acceptance limits these settings describe."""
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_readings=self.max_readings_per_message,
            max_dtcs=self.max_dtcs_per_message,
            future_tolerance_ms=self.future_tolerance_s * 1000,
            retention_ms=self.retention_days * 24 * 3600 * 1000,
        )


def load_settings() -> Settings:
    """Read the settings from the environment."""
    return Settings()
