"""Configuration from MEDLOOP_* environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "medloop-dev-secret-change-me-in-production-0000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDLOOP_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///medloop.db",
        description="SQLAlchemy URL; SQLite file in the working directory by default.",
    )
    secret_key: str = Field(default=DEV_SECRET, description="Signs access tokens (HS256).")
    identifier_key: str = Field(
        default="medloop-dev-identifier-key",
        description="Keys the HMAC under which national IDs are stored; never stored itself.",
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="argon2id passes (OWASP: ≥ 2 with 19 MiB).")
    argon2_memory_kib: int = Field(default=65536, ge=8, description="argon2id memory per hash, KiB.")
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    timezone: str = Field(default="Asia/Shanghai", description="Default display zone.")
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Larger request bodies get 413.")
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_broker: str | None = Field(default=None, description="mqtt://user:pass@host:port; unset = none.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
