"""The service's own OpenAPI 3.1 description, served at `GET /openapi.json` (no auth).

A composition module (like `fleet.app`): it describes every room's routes, so it reads the request
models of `allocator` and `autoscaler` to keep the documented bodies the ones actually enforced.
Answers are described loosely (their main fields, extra fields allowed): the service mirrors the
platform's shapes and adds fields of its own over time. Every operation documents the errors it
can give: 401 without the token, 422 naming the field, and 503 with `Retry-After` when Redis or
the platform is unavailable (an answer to retry, not a failure).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

REF = "#/components/schemas/{model}"
Security = list[dict[str, list[str]]]

API_AUTH: Security = [{"apiToken": []}]
WEBHOOK_AUTH: Security = [{"webhookSecret": []}]
NO_AUTH: Security = []


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _retry_later(description: str) -> Schema:
    answer = _error(description)
    answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return answer


def _errors(*codes: int) -> dict[str, Schema]:
    """The usual error answers by status code (401 and 503 are added to every API operation)."""
    texts = {
        400: "body is not a JSON object, is malformed or nested too deep",
        401: "missing or invalid `Authorization: token` header",
        404: "not found",
        409: "conflict: the name exists, or another request is changing the same session (retry)",
        410: "the session was already deleted",
        413: "body larger than 256 KiB",
        422: "invalid input; the message (and `errors`, when present) names each bad field",
    }
    return {str(code): _error(texts[code]) for code in codes}


UNAVAILABLE = _retry_later(
    "Redis or the platform is unavailable, or no capacity can come: retry after `Retry-After`"
)


def _op(
    summary: str,
    ok: dict[str, Schema],
    *,
    errors: tuple[int, ...] = (),
    security: Security = API_AUTH,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    tag: str,
) -> Schema:
    responses: dict[str, Schema] = dict(ok)
    codes = set(errors)
    if security is API_AUTH:
        codes.add(401)
    if body is not None:
        codes.update((400, 413, 422))
    responses.update(_errors(*sorted(codes)))
    responses["503"] = UNAVAILABLE
    op: Schema = {"summary": summary, "tags": [tag], "security": security, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    }


def _query_int(name: str, minimum: int, maximum: int, default: int) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default},
    }


def _query_flag(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "boolean", "default": False},
    }


def _model_schemas(models: dict[str, type[BaseModel]]) -> dict[str, Schema]:
    """Request models as component schemas; nested models hoisted to components too."""
    out: dict[str, Schema] = {}
    for name, model in models.items():
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[name] = schema
    return out


PAGINATION: Schema = {
    "type": "object",
    "properties": {
        "number": {"type": "integer"},
        "next_page_number": {"type": ["integer", "null"]},
        "previous_page_number": {"type": ["integer", "null"]},
        "paginator": {"type": "object", "properties": {"num_pages": {"type": "integer"}}},
        "has_next": {"type": "boolean"},
        "has_previous": {"type": "boolean"},
    },
}

LOOSE_OBJECT: Schema = {"type": "object"}

FILTER: Schema = {
    "type": "object",
    "required": ["field", "values", "filter_type"],
    "properties": {
        "field": {
            "type": "string",
            "enum": ["city", "country", "continent", "region", "administrative_division", "location_tags"],
        },
        "values": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "filter_type": {"type": "string", "enum": ["any", "all", "not"]},
    },
}

POLICY_DATA: Schema = {
    "description": "Location and Tag: `{filters: [...]}`; Coordinates: `{latitude, longitude}`",
    "oneOf": [
        {
            "type": "object",
            "required": ["filters"],
            "properties": {"filters": {"type": "array", "items": _ref("LocationFilter")}},
        },
        {
            "type": "object",
            "required": ["latitude", "longitude"],
            "properties": {
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            },
        },
    ],
}

POLICY_FIELDS: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 64},
    "enabled": {"type": "boolean"},
    "type": {"type": "string", "enum": ["Location", "Tag", "Coordinates"]},
    "minimum": {"type": "integer", "minimum": 1},
    "maximum": {"type": "integer", "minimum": 1, "description": "at least `minimum`"},
    "threshold": {"type": "number", "minimum": 0.1, "maximum": 1},
    "data": _ref("PolicyData"),
    "idle_s": {"type": ["number", "null"], "minimum": 0, "description": "ours: idle time before a stop"},
    "cooldown_s": {"type": "number", "minimum": 0, "description": "ours: no scale-in after a scale-up"},
    "hysteresis": {"type": "number", "minimum": 0, "maximum": 0.9, "description": "ours"},
    "dry_run": {"type": "boolean", "description": "ours: decide and log, never act"},
    "create_time": {"description": "copied back from a GET: accepted and ignored"},
    "last_updated": {"description": "copied back from a GET: accepted and ignored"},
}

WEBHOOK_DEPLOYMENT: Schema = {
    "type": "object",
    "required": ["request_id"],
    "description": "the platform's deployment `Status` shape",
    "properties": {
        "request_id": {"type": "string"},
        "current_status": {"type": "string"},
        "sockets": {"type": ["integer", "string", "null"]},
        "sockets_usage": {"type": ["integer", "string", "null"]},
        "fqdn": {"type": "string"},
        "public_ip": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}

WEBHOOK_SESSION: Schema = {
    "type": "object",
    "required": ["session_id"],
    "description": "the platform's `SessionGet` shape",
    "properties": {
        "session_id": {"type": "string"},
        "status": {"type": "string"},
        "linked": {"type": "boolean"},
        "ready": {"type": "boolean"},
        "deployment": {"type": "object"},
        "error": {"type": "string"},
    },
}

WEBHOOK_TELEMETRY: Schema = {
    "type": "object",
    "required": ["retrieval_key"],
    "properties": {
        "retrieval_key": {"type": "string"},
        "partial_result": {"type": "boolean"},
        "scores": {
            "type": "array",
            "items": {"type": "object", "properties": {"request_id": {"type": "string"}}},
        },
    },
}


def _components() -> Schema:
    from allocator.schemas import SessionCreateIn, UsersIn
    from autoscaler.payloads import FleetCreate, FleetPatch

    schemas = _model_schemas({"SessionCreate": SessionCreateIn, "SessionUsers": UsersIn})
    schemas.update(_model_schemas({"FleetCreate": FleetCreate, "FleetPatch": FleetPatch}))
    schemas.update(
        {
            "Error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}, "error": {"type": "string"}},
                        },
                    },
                },
            },
            "Pagination": PAGINATION,
            "LocationFilter": FILTER,
            "PolicyData": POLICY_DATA,
            "PolicyCreate": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "enabled", "type", "minimum", "maximum", "threshold", "data"],
                "properties": POLICY_FIELDS,
            },
            "PolicyPatch": {"type": "object", "additionalProperties": False, "properties": POLICY_FIELDS},
            "Fleet": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "enabled": {"type": "boolean"},
                    "dry_run": {"type": "boolean"},
                    "create_time": {"type": "string"},
                    "last_updated": {"type": "string"},
                },
            },
            "Policy": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
            },
            "Deployment": {
                "type": "object",
                "description": "the platform's `Status` shape plus ours (fleet, policy, intent, draining, "
                "reserved and session sockets, last_heard)",
                "properties": {
                    "request_id": {"type": "string"},
                    "current_status": {"type": ["string", "null"]},
                    "sockets": {"type": ["integer", "null"]},
                    "sockets_usage": {"type": ["integer", "null"]},
                    "reserved_sockets": {"type": "integer"},
                    "fleet": {"type": ["string", "null"]},
                    "policy": {"type": ["string", "null"]},
                    "draining": {"type": "boolean"},
                },
            },
            "Session": {
                "type": "object",
                "properties": {"session_id": {"type": "string"}, "status": {"type": "string"}},
            },
            "SessionUsersAnswer": {
                "type": "object",
                "properties": {"session_users": {"type": "array", "items": {"type": "object"}}},
            },
            "WebhookDeployment": WEBHOOK_DEPLOYMENT,
            "WebhookSession": WEBHOOK_SESSION,
            "WebhookTelemetry": WEBHOOK_TELEMETRY,
            "WebhookResult": {"type": "object", "properties": {"result": {"type": "string"}}},
        }
    )
    return {
        "schemas": schemas,
        "headers": {
            "RetryAfter": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}
        },
        "securitySchemes": {
            "apiToken": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`token <FLEET_API_TOKEN>`, as the platform does",
            },
            "webhookSecret": {
                "type": "apiKey",
                "in": "query",
                "name": "token",
                "description": "one of FLEET_WEBHOOK_SECRET's comma-separated values (in the callback URL)",
            },
        },
    }


def _fleet_paths() -> dict[str, Schema]:
    fleet, policy = _path("fleet", "fleet name"), _path("policy", "policy name")
    app, version = _path("app", "app name"), _path("version", "app version name")
    page, limit = _query_int("page", 1, 1_000_000, 1), _query_int("limit", 1, 1000, 10)
    stop = _query_flag("stop_deployments", "also stop its deployments, each once it is empty")
    fleet_ok = {"200": _json(_ref("Fleet"), "the fleet")}
    policy_ok = {"200": _json(_ref("Policy"), "the policy")}
    listed = {"200": _json(LOOSE_OBJECT, "one page, with the platform's pagination object")}
    t = "fleets"
    return {
        "/v1/fleet": {
            "post": _op("create a fleet", fleet_ok, errors=(409,), body=_ref("FleetCreate"), tag=t)
        },
        "/v1/fleets": {"get": _op("list fleets", listed, errors=(422,), params=[page, limit], tag=t)},
        "/v1/fleet/{fleet}": {
            "parameters": [fleet],
            "get": _op("read a fleet", fleet_ok, errors=(404,), tag=t),
            "patch": _op(
                "rename or enable a fleet", fleet_ok, errors=(404, 409), body=_ref("FleetPatch"), tag=t
            ),
            "delete": _op(
                "delete a fleet (deployments kept unless asked)",
                {"200": _json(_ref("Error"), "deleted")},
                errors=(404, 422),
                params=[stop],
                tag=t,
            ),
        },
        "/v1/fleet/{fleet}/app/{app}/version/{version}": {
            "parameters": [fleet, app, version],
            "put": _op(
                "link an app version", {"200": _json(LOOSE_OBJECT, "the link")}, errors=(404, 422), tag=t
            ),
            "delete": _op(
                "unlink an app version", {"204": {"description": "unlinked"}}, errors=(404,), tag=t
            ),
        },
        "/v1/fleet/{fleet}/policies": {
            "parameters": [fleet],
            "get": _op("list policies", listed, errors=(404, 422), params=[page, limit], tag=t),
            "post": _op("create a policy", policy_ok, errors=(404, 409), body=_ref("PolicyCreate"), tag=t),
        },
        "/v1/fleet/{fleet}/policies/{policy}": {
            "parameters": [fleet, policy],
            "get": _op("read a policy (with its status)", policy_ok, errors=(404,), tag=t),
            "patch": _op("change a policy", policy_ok, errors=(404, 409), body=_ref("PolicyPatch"), tag=t),
            "delete": _op(
                "delete a policy (deployments kept unless asked)",
                {"204": {"description": "deleted"}},
                errors=(404, 422),
                params=[stop],
                tag=t,
            ),
        },
        "/v1/fleet/{fleet}/decisions": {
            "parameters": [fleet],
            "get": _op(
                "recent decisions, newest first",
                {"200": _json(LOOSE_OBJECT, "`{fleet, decisions}`")},
                errors=(404, 422),
                params=[
                    _query_int("limit", 1, 200, 50),
                    {"name": "policy", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                tag=t,
            ),
        },
    }


def _session_paths() -> dict[str, Schema]:
    sid = _path("session_id", "our session id")
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "ours: hold the answer up to this many seconds until linked",
        "schema": {"type": "number", "minimum": 0, "maximum": 120},
    }
    users_ok = {"200": _json(_ref("SessionUsersAnswer"), "the session's players")}
    t = "sessions"
    return {
        "/v1/session": {
            "post": _op(
                "place a session (answers at once, waiting if no room)",
                {"200": _json(_ref("Session"), "the platform's SessionRequest, our session id")},
                errors=(409,),
                params=[wait],
                body=_ref("SessionCreate"),
                tag=t,
            )
        },
        "/v1/sessions": {
            "get": _op(
                "list active sessions",
                {"200": _json(LOOSE_OBJECT, "`{data, total_count, pagination}`")},
                errors=(422,),
                params=[_query_int("page", 1, 1_000_000, 1), _query_int("limit", 1, 100, 10)],
                tag=t,
            )
        },
        "/v1/session/{session_id}": {
            "parameters": [sid],
            "get": _op(
                "read a session", {"200": _json(_ref("Session"), "SessionGet")}, errors=(404, 410), tag=t
            ),
            "delete": _op(
                "delete a session and free its sockets",
                {"200": _json(LOOSE_OBJECT, "SessionDelete")},
                errors=(404, 409, 410),
                tag=t,
            ),
        },
        "/v1/session/{session_id}/users": {
            "parameters": [sid],
            "get": _op("the session's players", users_ok, errors=(404, 410), tag=t),
            "put": _op("add players", users_ok, errors=(404, 409, 410), body=_ref("SessionUsers"), tag=t),
            "delete": _op(
                "remove players", users_ok, errors=(404, 409, 410), body=_ref("SessionUsers"), tag=t
            ),
        },
    }


def _other_paths() -> dict[str, Schema]:
    hook_ok = {"200": _json(_ref("WebhookResult"), "recorded (or a duplicate that changed nothing)")}
    # A wrong secret is 401; repeated wrong secrets from one address are throttled with 429.
    throttled = _retry_later("too many refused callbacks from this address")
    ops: dict[str, Schema] = {
        "/v1/deployments": {
            "get": _op(
                "our view of the deployments (the platform's list shape)",
                {"200": _json(LOOSE_OBJECT, "`{data, total_count, pagination}`")},
                errors=(422,),
                params=[_query_int("page", 1, 1_000_000, 1), _query_int("limit", 1, 1000, 100)],
                tag="deployments",
            )
        },
        "/v1/deployments/{request_id}": {
            "parameters": [_path("request_id", "the platform's deployment request id")],
            "get": _op(
                "one deployment: the platform's status shape plus ours",
                {"200": _json(_ref("Deployment"), "the deployment")},
                errors=(404,),
                tag="deployments",
            ),
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": NO_AUTH,
                "responses": {
                    "200": {"description": "text exposition format", "content": {"text/plain": {}}}
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "the process is up",
                "tags": ["operations"],
                "security": NO_AUTH,
                "responses": {"200": _json(LOOSE_OBJECT, "`{status: ok}`")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Redis is reachable",
                "tags": ["operations"],
                "security": NO_AUTH,
                "responses": {"200": _json(LOOSE_OBJECT, "`{status: ready}`"), "503": UNAVAILABLE},
            }
        },
    }
    for kind, body in (
        ("deployments", "WebhookDeployment"),
        ("sessions", "WebhookSession"),
        ("telemetry", "WebhookTelemetry"),
    ):
        op = _op(
            f"platform callback: {kind}",
            hook_ok,
            security=WEBHOOK_AUTH,
            errors=(401,),
            body=_ref(body),
            tag="webhooks",
        )
        op["responses"]["429"] = throttled
        ops[f"/webhooks/{kind}"] = {"post": op}
    return ops


@functools.cache
def _document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "codema-fleet",
            "version": "1",
            "description": "Fleet autoscaler and session allocator for Codema: the platform's Fleet and "
            "Session API paths and payloads, platform callbacks, our view of deployments, operations.",
        },
        "paths": {**_fleet_paths(), **_session_paths(), **_other_paths()},
        "components": _components(),
        "security": API_AUTH,
    }


def openapi_document() -> Schema:
    """The description (a copy: callers may change it)."""
    return copy.deepcopy(_document())
