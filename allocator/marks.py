"""Our session id in the callback URL we hand the platform, so every platform session we create
can be found again in the platform's session list (`SessionContext.webhook_url`).

The platform gives no idempotency key for a session create, and its id is only known from the
answer: after a lost answer, or after Redis lost the mapping, the `sid` query parameter is the only
link from a platform session back to ours (as the `intent:` tag is for deployments). It is not a
secret; the `token` beside it is, so these URLs are never logged.

Only URLs pointing at our own session callback (scheme, host and path of `FLEET_PUBLIC_URL`'s
`/webhooks/sessions`) count: another installation sharing the platform account keeps its sessions.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

SID_PARAM = "sid"
# What `allocator.service.new_session_id` makes; anything else in a URL is not one of ours (and
# never reaches a Redis key).
SESSION_ID = re.compile(r"^[0-9a-f]{16}-s$")


def marked_url(callback_url: str, session_id: str) -> str:
    """The session callback URL carrying our session id."""
    joiner = "&" if "?" in callback_url else "?"
    return f"{callback_url}{joiner}{SID_PARAM}={quote(session_id, safe='')}"


def _place(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def session_id_in(webhook_url: str, callback_url: str) -> str:
    """Our session id carried by a platform session's `webhook_url`, or "" when it is not ours."""
    if not webhook_url:
        return ""
    try:
        if _place(webhook_url) != _place(callback_url):
            return ""
        values = parse_qs(urlsplit(webhook_url).query).get(SID_PARAM, [])
    except ValueError:  # a URL the platform mangled: not one we can claim
        return ""
    return values[0] if len(values) == 1 and SESSION_ID.match(values[0]) else ""
