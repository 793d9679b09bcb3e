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
    token_cache_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How long the API trusts its copy of the tokens: revocations elsewhere "
        "take effect within this.",
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

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_is_mqtt(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
                raise ValueError("TELEMATICS_MQTT_URL must look like mqtt://host:port")
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
            future_tolerance_ms=self.future_tolerance_s * 1000,
            retention_ms=self.retention_days * 24 * 3600 * 1000,
        )


def load_settings() -> Settings:
    """Read the settings from the environment."""
    return Settings()
