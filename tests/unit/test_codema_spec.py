"""Every request the client sends conforms to the platform's Swagger spec
(../shared/spec/codema-v1.swagger.json): path and method exist, query parameters are declared,
the body validates against the operation's schema. The schemas are tightened to refuse any
property the spec does not name, except the documented seed differences below."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
import pytest

from codema.client import CodemaClient
from codema.schemas import AppVersionCreate, DeployRequest, SessionCreate
from tests.conftest import shared_path
from tests.unit.test_codema_client import TOKEN, FakePlatform, FakeTime, make_client

# Seed differences (codema-api.md §1.1.1 and §0.5): the seed's deploy takes `command`/`arguments`,
# and the 2026 spec adds `page`/`limit` to every list (safe to send on any list call).
SEED_BODY_FIELDS = {"DeployModel": {"command", "arguments"}}
SEED_QUERY_PARAMS = {"page", "limit"}
# In answers (§0.5, §0.6, §4): counts as numeric strings, the session's `app_id` for `app_version`,
# and null for "none" (Swagger 2.0 cannot say nullable; the docs show `next_page_number: null`).
SEED_COUNT_FIELDS = {"sockets", "sockets_usage", "user_count"}


def undo_seed_differences(value: Any) -> Any:
    if isinstance(value, list):
        return [undo_seed_differences(v) for v in value]
    if not isinstance(value, dict):
        return value
    fixed = {}
    for key, item in value.items():
        if item is None:
            continue
        if key in SEED_COUNT_FIELDS and isinstance(item, str) and item.isdigit():
            item = int(item)
        fixed["app_version" if key == "app_id" else key] = undo_seed_differences(item)
    return fixed


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return dict(json.loads(shared_path("spec", "codema-v1.swagger.json").read_text()))


def strict_definitions(spec: dict[str, Any]) -> dict[str, Any]:
    definitions = copy.deepcopy(spec["definitions"])
    for name, schema in definitions.items():
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            allowed = SEED_BODY_FIELDS.get(name, set())
            for extra in allowed:
                schema["properties"].setdefault(extra, {"type": ["string", "null"]})
            schema["additionalProperties"] = False
    return definitions


def find_operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not an operation of the spec")


async def exercise_every_method(client: CodemaClient, platform: FakePlatform) -> None:
    """Call every public method once, with every optional field of the request models filled in."""
    await client.create_app("game", is_active=True, image="aGVsbG8=")
    await client.get_app("game")
    await client.list_apps()
    await client.create_app_version("game", full_app_version())
    await client.get_app_version("game", "v1")
    await client.list_app_versions("game")
    created = await client.deploy(full_deploy_request(), intent="intent-1")
    await client.find_by_intent("intent-1")
    await client.status(created.request_id)
    await client.list_deployments()
    await client.stop(created.request_id)
    await client.bulk_stop([created.request_id])
    session = await client.create_session(full_session_request(created.request_id))
    await client.get_session(session.session_id)
    await client.get_session_users(session.session_id)
    await client.add_session_users(session.session_id, ["198.51.100.9"])
    await client.remove_session_users(session.session_id, ["198.51.100.9"])
    await client.list_sessions()
    await client.delete_session(session.session_id)
    ticket = await client.request_telemetry([created.request_id], ["198.51.100.1"], "https://h/wh?token=x")
    await client.telemetry_result(ticket.retrieval_key)
    await client.locations(app="game", version="v1", tags=True)
    await client.lookup_ip("198.51.100.1")
    await client.lookup_ips([f"198.51.100.{i}" for i in range(25)])


def full_deploy_request() -> DeployRequest:
    return DeployRequest.model_validate(
        {
            "app_name": "game",
            "version_name": "v1",
            "is_public_app": False,
            "ip_list": ["198.51.100.1"],
            "geo_ip_list": [{"ip": "198.51.100.2", "latitude": 45.5, "longitude": -73.5}],
            "telemetry_profile_uuid_list": ["p1"],
            "env_vars": [{"key": "K", "value": "V", "is_hidden": True}],
            "skip_telemetry": True,
            "location": {"latitude": 45.5, "longitude": -73.5},
            "webhook_url": "https://h/webhooks/deployments?token=x",
            "tags": ["fleet-a"],
            "container_log_storage": {"enabled": True, "endpoint_storage": "s3"},
            "filters": [{"field": "city", "values": ["Montreal"], "filter_type": "any"}],
            "ap_sort_strategy": "weighted",
            "command": "run",
            "arguments": "--fast",
        }
    )


def full_session_request(request_id: str) -> SessionCreate:
    return SessionCreate.model_validate(
        {
            "app_name": "game",
            "version_name": "v1",
            "ip_list": ["198.51.100.1"],
            "geo_ip_list": [{"ip": "198.51.100.2", "latitude": 45.5, "longitude": -73.5}],
            "deployment_request_id": request_id,
            "location": {"latitude": 45.5, "longitude": -73.5},
            "city": "Montreal",
            "country": "Canada",
            "continent": "North America",
            "administrative_division": "Quebec",
            "region": "na",
            "selectors": [{"tag": "ranked", "tag_only": False, "env": {"key": "MAP", "value": "1"}}],
            "webhook_url": "https://h/webhooks/sessions?token=x",
            "filters": [{"field": "city", "values": ["Montreal"], "filter_type": "not"}],
            "skip_telemetry": False,
        }
    )


def full_app_version() -> AppVersionCreate:
    return AppVersionCreate.model_validate(
        {
            "name": "v1",
            "docker_repository": "registry.example",
            "docker_image": "studio/game",
            "docker_tag": "1.0",
            "req_cpu": 256,
            "req_memory": 512,
            "is_active": True,
            "private_username": "u",
            "private_token": "p",
            "req_video": 0,
            "max_duration": 60,
            "use_telemetry": True,
            "whitelisting_active": False,
            "force_cache": False,
            "cache_min_hour": 1,
            "cache_max_hour": 5,
            "time_to_deploy": 120,
            "enable_all_locations": False,
            "session_config": {
                "kind": "Seat",
                "sockets": 10,
                "autodeploy": False,
                "empty_ttl": 5,
                "session_max_duration": 60,
            },
            "ports": [
                {"port": 7777, "protocol": "UDP", "to_check": True, "tls_upgrade": False, "name": "game"}
            ],
            "probe": {"optimal_ping": 60, "rejected_ping": 180},
            "envs": [{"key": "K", "value": "V", "is_secret": True}],
            "verify_image": False,
            "termination_grace_period_seconds": 30,
            "endpoint_storage": "s3",
        }
    )


async def test_every_request_the_client_sends_conforms_to_the_spec(spec: dict[str, Any]) -> None:
    platform = FakePlatform(page_size=100)
    async with make_client(platform, FakeTime()) as client:
        await exercise_every_method(client, platform)
    definitions = strict_definitions(spec)
    checked_bodies = set()
    for request in platform.requests:
        assert request.headers["authorization"] == f"token {TOKEN}"
        operation = find_operation(spec, request.method, request.url.path)
        params = {p["name"]: p for p in operation.get("parameters", [])}
        for name in parse_qs(request.url.query.decode()):
            assert name in params or name in SEED_QUERY_PARAMS, f"{request.url.path}: undeclared ?{name}"
        body_params = [p for p in params.values() if p.get("in") == "body"]
        if not body_params:
            assert not request.content, f"{request.method} {request.url.path} takes no body"
            continue
        schema = {**body_params[0]["schema"], "definitions": definitions}
        jsonschema.Draft4Validator(schema).validate(json.loads(request.content))
        checked_bodies.add((request.method, body_params[0]["schema"]["$ref"].rsplit("/", 1)[-1]))
    assert {name for _, name in checked_bodies} == {
        "ApplicationPost",
        "AppVersionPayload",
        "DeployModel",
        "DeploymentBulkStopPayload",
        "SessionModel",
        "PatchSessionModel",
        "ActiveDeploymentTelemetryRequest",
        "IPAddressesLookupPayload",
    }


def test_the_strict_check_refuses_a_field_the_spec_does_not_name(spec: dict[str, Any]) -> None:
    schema = {"$ref": "#/definitions/DeployModel", "definitions": strict_definitions(spec)}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"app_name": "g", "players": 3})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"app_name": "g", "filters": [{"field": "city"}]})


async def test_the_fake_platform_answers_validate_against_the_spec(spec: dict[str, Any]) -> None:
    """Keeps the fake honest: the shapes the client is tested against are the spec's."""
    platform = FakePlatform(page_size=100)
    answers: list[tuple[httpx.Request, httpx.Response]] = []
    original = platform.handler

    def recording(request: httpx.Request) -> httpx.Response:
        response = original(request)
        answers.append((request, response))
        return response

    platform.handler = recording  # type: ignore[method-assign]
    async with make_client(platform, FakeTime()) as client:
        await exercise_every_method(client, platform)
    for request, response in answers:
        operation = find_operation(spec, request.method, request.url.path)
        schema = operation["responses"][str(response.status_code)].get("schema")
        if schema is not None:
            resolved = {**schema, "definitions": spec["definitions"]}
            jsonschema.Draft4Validator(resolved).validate(undo_seed_differences(json.loads(response.content)))
