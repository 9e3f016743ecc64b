"""The one settings class. Read once by the composition root; no other module reads os.environ."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CODEMA_API_URL = "https://api.codema.invalid"


class Settings(BaseSettings):
    """Environment settings; prefix FLEET_ except the platform's CODEMA_API_URL / CODEMA_API_TOKEN."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore", frozen=True)

    redis_url: str = DEFAULT_REDIS_URL
    # Every Redis key (and the RQ queue name) starts with this, so several installations or test
    # runs can share one Redis without seeing each other.
    redis_prefix: str = "fleet"

    codema_api_url: str = Field(
        DEFAULT_CODEMA_API_URL, validation_alias=AliasChoices("CODEMA_API_URL", "FLEET_CODEMA_API_URL")
    )
    codema_api_token: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("CODEMA_API_TOKEN", "FLEET_CODEMA_API_TOKEN")
    )
    codema_timeout_s: float = 5.0
    codema_max_attempts: int = 4

    api_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    allow_insecure_webhooks: bool = False
    public_url: str = "http://127.0.0.1:8000"

    config: str | None = None  # FLEET_CONFIG: declarative fleets file re-applied after Redis loss
    dry_run: bool = False  # global shadow mode: decide and log, never create or stop

    # Scaler
    scaler_tick_s: float = 1.0
    reconcile_interval_s: float = 15.0
    session_audit_interval_s: float = 60.0  # linked sessions checked against the platform's list
    lease_ttl_s: float = 10.0
    deploy_timeout_s: float = 300.0
    default_idle_s: float = 300.0
    account_max_deployments: int = 1000
    account_max_creates_per_minute: int = 120

    # Allocator
    reservation_ttl_s: float = 15.0
    telemetry_ttl_s: float = 300.0
    session_wait_s: float = 120.0

    # Retention of records that are no longer live (fleet.store.Retention): Redis holds about
    # rate x keep_s of each.
    ended_session_keep_s: float = Field(default=3600.0, gt=0)
    telemetry_keep_s: float = Field(default=600.0, gt=0)
    early_callback_keep_s: float = Field(default=600.0, gt=0)

    log_format: str = "kv"  # "kv" (key=value) or "json"
    log_level: str = "INFO"
    access_log: bool = False  # uvicorn's line per request (token scrubbed); off: one line per decision
    metrics_dir: str | None = None  # PROMETHEUS_MULTIPROC_DIR for this process family

    @field_validator("codema_api_url", "public_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v not in ("kv", "json"):
            raise ValueError("FLEET_LOG_FORMAT must be 'kv' or 'json'")
        return v

    def webhook_secrets(self) -> list[str]:
        """All accepted webhook secrets; the first is the one handed to the platform."""
        raw = self.webhook_secret.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()]
