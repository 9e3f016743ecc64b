"""Client session webhooks: the session's `SessionGet` body POSTed to its `webhook_url` when it is
linked, unprocessable or in error, as the platform does. Sent in the background (a slow client
endpoint never delays a placement), with a few retries on 5xx and transport errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from allocator.background import Background
from fleet import metrics
from fleet.logging import event

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0  # the platform's own webhook timeout
RETRY_PAUSES_S = (1.0, 3.0)


class Notifier:
    def __init__(self, background: Background, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.background = background
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def send(self, url: str, body: dict[str, Any]) -> None:
        if url:
            self.background.spawn(self._post(url, body), "session-webhook")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=TIMEOUT_S, transport=self._transport)
        return self._http

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        host = urlsplit(url).hostname or "?"
        for attempt, pause in enumerate((0.0, *RETRY_PAUSES_S)):
            await asyncio.sleep(pause)
            try:
                answer = await self._client().post(url, json=body)
            except httpx.HTTPError as err:
                outcome = type(err).__name__
            else:
                if answer.status_code < 300:
                    metrics.ALLOC_WEBHOOKS.labels("ok").inc()
                    return
                outcome = str(answer.status_code)
                if answer.status_code < 500 and answer.status_code != 429:
                    break
            event(
                log, "session_webhook_failed", logging.INFO, host=host, attempt=attempt + 1, outcome=outcome
            )
        metrics.ALLOC_WEBHOOKS.labels("failed").inc()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
