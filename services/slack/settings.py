"""Settings of the Slack-compatible facade, from ``PARLEY_SLACK_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_SLACK_", extra="ignore")

    # Web API: one token bucket per token, across methods (sends also meet the domain's own limit).
    rate_per_second: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=200, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Socket Mode. Slack expects an ack within 3 s and retries an event up to 3 times.
    ack_timeout: float = Field(default=3.0, gt=0, description="seconds before an unacked envelope is resent")
    max_retries: int = Field(default=3, ge=0)
    session_linger: float = Field(
        default=120.0, ge=0, description="seconds an app's undelivered events wait for it to reconnect"
    )
    max_connections_per_app: int = Field(default=10, ge=1)
    disconnect_grace: float = Field(
        default=10.0, ge=0, description="seconds between a `disconnect` frame and closing the socket"
    )
    refresh_after: float | None = Field(
        default=None, gt=0, description="ask each socket to reconnect after this many seconds (Slack: hours)"
    )
    send_queue_size: int = Field(default=2_000, ge=10)
    max_pending: int = Field(
        default=10_000,
        ge=10,
        description="envelopes an app may have unacknowledged or waiting; oldest go first",
    )
    public_url: str | None = Field(
        default=None, description="base URL clients reach this service at (else taken from the request)"
    )
