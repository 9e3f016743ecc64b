"""HTTP helpers shared by the service's routes: JSON errors, API auth, bounded JSON bodies.

Errors are `{"message": ...}` like the platform's; validation errors are 422 and name the field.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32


class HttpError(Exception):
    """Raised inside a route; rendered as {"message": ...} with the status code."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def validation_message(err: ValidationError) -> tuple[str, list[dict[str, str]]]:
    """`threshold: Input should be less than or equal to 1; ...` plus a per-field list."""
    fields = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__") or "body"
        fields.append({"field": loc, "error": e["msg"]})
    return "; ".join(f"{f['field']}: {f['error']}" for f in fields), fields


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        message, fields = validation_message(err)
        raise HttpError(422, message, extra={"errors": fields}) from err


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read at most `limit` bytes while streaming; Content-Length is not trusted. Reads the ASGI
    messages itself (Starlette's `stream()` adds an async generator per request): the body is
    read once, by the endpoint."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(
    request: Request, limit: int = MAX_BODY_BYTES, *, allow_empty: bool = False
) -> dict[str, Any]:
    """A JSON object body, or HttpError 413 (too big) / 400 (malformed, not an object, too deep)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise HttpError(400, "body must be a JSON object")
    # Cheap pre-check: bracket depth in the raw text bounds the parser's recursion. The number of
    # opening brackets bounds the depth, so the byte-by-byte scan only runs for bodies with many.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH:
        _check_depth(raw)
    try:
        data = orjson.loads(raw)
    except ValueError:
        data = _lenient_json(raw)
    if not isinstance(data, dict):
        raise HttpError(400, "body must be a JSON object")
    return data


def _lenient_json(raw: bytes) -> Any:
    """What orjson refuses but Python's json reads (NaN and Infinity, which Python services emit;
    a byte-order mark; UTF-16; lone surrogates) is still read: refusing a callback loses it, as the
    platform does not send it again. Rare, so the slower parser costs nothing in the common case."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise HttpError(400, "body is not valid JSON") from err


def _check_depth(raw: bytes) -> None:
    depth = 0
    deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise HttpError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif byte in (0x7D, 0x5D):
            depth -= 1


def check_api_token(request: Request, expected: str) -> None:
    """`Authorization: token <FLEET_API_TOKEN>`, compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if (
        scheme.lower() != "token"
        or not value
        or not hmac.compare_digest(value.strip().encode(), expected.encode())
    ):
        raise HttpError(401, "missing or invalid Authorization: token header")


def query_int(request: Request, name: str, default: int, minimum: int = 1, maximum: int = 1000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise HttpError(422, f"{name}: must be an integer") from err
    if not minimum <= value <= maximum:
        raise HttpError(422, f"{name}: must be between {minimum} and {maximum}")
    return value


def pagination(page: int, limit: int, total: int) -> dict[str, Any]:
    """The platform's pagination object."""
    pages = max(1, -(-total // limit))
    return {
        "number": page,
        "next_page_number": page + 1 if page < pages else None,
        "previous_page_number": page - 1 if page > 1 else None,
        "paginator": {"num_pages": pages},
        "has_next": page < pages,
        "has_previous": page > 1,
    }
