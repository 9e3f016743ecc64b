"""Logging: one line per event, `key=value` (or JSON), with secrets scrubbed from every record.

Modules log with `log.info("decision", extra=kv(fleet=..., reason=...))`-style fields through
`event(logger, "name", **fields)`; the formatter renders `event=name fleet=f reason=r`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

_FIELDS = "fleet_fields"
# Any `token=...` query parameter (webhook callback URLs carry the secret there) or
# `Authorization: token ...` header value is replaced, whatever the secret's value.
_TOKEN_QUERY = re.compile(r"(?i)([?&](?:token|secret)=)[^&\s\"']+")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?token\s+)[^\s'\"]+")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one decision or fact as `event=name k=v ...`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    text = _TOKEN_QUERY.sub(r"\1***", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class KeyValueFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), as_json: bool = False) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, None) or {}
        message = record.getMessage()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        base: dict[str, Any] = {"ts": ts, "level": record.levelname.lower(), "logger": record.name}
        if fields:
            base["event"] = message
            base.update(fields)
        else:
            base["msg"] = message
        if record.exc_info:
            base["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            line = json.dumps(base, default=str)
        else:
            line = " ".join(f"{k}={_quote(v)}" for k, v in base.items())
        return scrub(line, self.secrets)


def configure(
    level: str = "INFO", fmt: str = "kv", secrets: Iterable[str] = (), *, access_log: bool = False
) -> None:
    """Route the root logger (and uvicorn's) through the scrubbing formatter.

    uvicorn's access log (a line per request, not per decision) is silenced unless asked for: this
    runs in each worker after uvicorn set up its loggers, and re-enabling propagation here would
    otherwise turn it back on (it once cost 8 % of the web process's CPU under callback load).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(secrets, as_json=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = name != "uvicorn.access" or access_log
    for noisy in ("httpx", "httpcore", "rq.worker", "rq.queue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
