"""The callback URLs handed to the platform. The platform signs nothing, so the secret travels
as the `token` query parameter (design.md §3); logs scrub it (fleet.logging.scrub)."""

from __future__ import annotations

from urllib.parse import quote

from fleet.settings import Settings

KINDS = ("deployments", "sessions", "telemetry")


def callback_url(settings: Settings, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown callback kind {kind!r}")
    secrets = settings.webhook_secrets()
    base = f"{settings.public_url}/webhooks/{kind}"
    # The first secret is the current one; older ones stay accepted for URLs the platform holds.
    return f"{base}?token={quote(secrets[0], safe='')}" if secrets else base
