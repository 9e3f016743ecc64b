"""Every simulator response through a deployment's and a session's life, validated against the
platform's own Swagger spec (../shared/spec/codema-v1.swagger.json), webhooks included."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import jsonschema
import pytest

from tests.conftest import shared_path
from tests.fixtures.sim import RunningSim, WebhookSink

UK_IP = "81.2.69.160"
ORDER = ["INITIALIZING", "SEEKING", "SEEKED", "SCANNING", "DEPLOYING", "READY", "TERMINATING", "TERMINATED"]


def loosen(schema: Any) -> Any:
    """Swagger 2.0 leaves optional fields nullable in practice: allow null where not required."""
    s = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            required = set(node.get("required", []))
            props = node.get("properties") or {}
            for name, prop in list(props.items()):
                if name in required or not isinstance(prop, dict):
                    continue
                if "$ref" in prop:
                    props[name] = {"anyOf": [prop, {"type": "null"}]}
                elif "type" in prop:
                    t = prop["type"]
                    prop["type"] = list(dict.fromkeys([*(t if isinstance(t, list) else [t]), "null"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


class Spec:
    """Checks responses against the spec; collects every problem so one test reports them all."""

    def __init__(self) -> None:
        self.doc = json.loads(shared_path("spec", "codema-v1.swagger.json").read_text())
        self.defs = loosen(self.doc["definitions"])
        self.problems: list[str] = []
        self.checked: set[tuple[str, str, int]] = set()

    def validate(self, definition: str, body: Any, where: str) -> None:
        validator = jsonschema.Draft4Validator(
            {"$ref": f"#/definitions/{definition}", "definitions": self.defs}
        )
        for err in list(validator.iter_errors(body))[:3]:
            self.problems.append(f"{where}: {'/'.join(map(str, err.path))}: {err.message[:150]}")

    def check(self, path: str, method: str, response: httpx.Response, expect: int | None = None) -> Any:
        code = response.status_code
        where = f"{method.upper()} {path} {code}"
        self.checked.add((path, method, code))
        if expect is not None and code != expect:
            self.problems.append(f"{where}: expected {expect}: {response.text[:200]}")
        declared = self.doc["paths"][path][method]["responses"].get(str(code))
        body = response.json()
        if declared is None:
            self.problems.append(f"{where}: status not in the spec")
        elif "schema" in declared:
            schema = declared["schema"]
            ref = schema.get("$ref", "").rsplit("/", 1)[-1]
            if ref:
                self.validate(ref, body, where)
        return body


@pytest.fixture
def spec() -> Spec:
    return Spec()


def test_every_response_conforms_through_a_deployment_and_session_life(
    sim: RunningSim, webhook_sink: WebhookSink, spec: Spec
) -> None:
    call = sim.request
    hooks = webhook_sink.url

    # applications and versions
    spec.check(
        "/v1/app", "post", call("POST", "/v1/app", {"name": "conf", "is_active": True, "image": ""}), 200
    )
    spec.check(
        "/v1/app", "post", call("POST", "/v1/app", {"name": "conf", "is_active": True, "image": ""}), 400
    )
    spec.check("/v1/app/{app_name}", "get", call("GET", "/v1/app/conf"), 200)
    spec.check("/v1/app/{app_name}", "patch", call("PATCH", "/v1/app/conf", {"is_active": True}), 200)
    spec.check("/v1/apps", "get", call("GET", "/v1/apps"), 200)
    seat = {"kind": "Seat", "sockets": 4, "autodeploy": False, "empty_ttl": 60}
    image = {"docker_repository": "r.local", "docker_image": "game", "docker_tag": "1"}
    version = {"name": "v1", **image, "req_cpu": 256, "req_memory": 256, "private_token": "registry-secret",
               "session_config": seat}  # fmt: skip
    created = spec.check(
        "/v1/app/{app_name}/version", "post", call("POST", "/v1/app/conf/version", version), 200
    )
    assert created["version"]["private_token"] != "registry-secret"
    spec.check("/v1/app/{app_name}/version", "post", call("POST", "/v1/app/conf/version", version), 409)
    spec.check("/v1/app/{app_name}/version", "post", call("POST", "/v1/app/none/version", version), 404)
    spec.check(
        "/v1/app/{app_name}/version/{version_name}", "get", call("GET", "/v1/app/conf/version/v1"), 200
    )
    spec.check(
        "/v1/app/{app_name}/version/{version_name}",
        "patch",
        call("PATCH", "/v1/app/conf/version/v1", {"session_config": {"empty_ttl": 30}}),
        200,
    )
    spec.check("/v1/app/{app_name}/versions", "get", call("GET", "/v1/app/conf/versions"), 200)

    # a deployment through every starting phase to READY
    body = {"app_name": "conf", "version_name": "v1", "ip_list": [UK_IP], "tags": ["conformance"],
            "webhook_url": f"{hooks}/deployments?token=secret"}  # fmt: skip
    rid = spec.check("/v1/deploy", "post", call("POST", "/v1/deploy", body), 200)["request_id"]
    seen: list[str] = []

    def ready() -> bool:
        status = spec.check("/v1/status/{request_id}", "get", call("GET", f"/v1/status/{rid}"), 200)
        name = status["current_status"].split(".")[-1]
        if not seen or seen[-1] != name:
            seen.append(name)
        assert isinstance(status["sockets_usage"], int)
        return name == "READY"

    sim.wait_for(ready, 10, "READY")
    assert [ORDER.index(s) for s in seen] == sorted(ORDER.index(s) for s in seen)
    assert len(seen) >= 3, seen
    spec.check("/v1/deployments", "get", call("GET", "/v1/deployments"), 200)
    spec.check("/v1/deploy", "post", call("POST", "/v1/deploy", {"app_name": "conf", "filters": [
        {"field": "city", "values": ["Atlantis"], "filter_type": "any"}]}), 422)  # fmt: skip
    spec.check("/v1/deploy", "post", call("POST", "/v1/deploy", {"version_name": "v1"}), 400)

    # a Seat session of two players on it, its users, the sessions list
    session = {"app_name": "conf", "version_name": "v1", "ip_list": [UK_IP, "8.8.8.8"],
               "deployment_request_id": rid, "webhook_url": f"{hooks}/sessions?token=secret"}  # fmt: skip
    sid = spec.check("/v1/session", "post", call("POST", "/v1/session", session), 200)["session_id"]
    got = spec.check("/v1/session/{session_id}", "get", call("GET", f"/v1/session/{sid}"), 200)
    assert got["linked"] and got["deployment"]["request_id"] == rid
    status = spec.check("/v1/status/{request_id}", "get", call("GET", f"/v1/status/{rid}"), 200)
    assert status["sockets_usage"] == 2 and status["sessions"][0]["session_id"] == sid
    users = "/v1/session/{session_id}/users"
    spec.check(users, "get", call("GET", f"/v1/session/{sid}/users"), 200)
    spec.check(users, "put", call("PUT", f"/v1/session/{sid}/users", {"ip_list": ["1.1.1.1"]}), 200)
    spec.check(
        users, "put", call("PUT", f"/v1/session/{sid}/users", {"ip_list": ["9.9.9.9", "8.8.4.4"]}), 422
    )
    spec.check(users, "delete", call("DELETE", f"/v1/session/{sid}/users", {"ip_list": ["1.1.1.1"]}), 200)
    spec.check("/v1/sessions", "get", call("GET", "/v1/sessions"), 200)

    # telemetry: partial while measuring, then complete
    tele = {"deployments": [rid], "ips": [UK_IP], "webhook_url": f"{hooks}/telemetry?token=secret"}
    asked = call("POST", "/v1/telemetry/active-deployments", tele)
    key = spec.check("/v1/telemetry/active-deployments", "post", asked, 200)["retrieval_key"]
    tpath = "/v1/telemetry/active-deployments/{retrieval_key}"
    first = spec.check(tpath, "get", call("GET", f"/v1/telemetry/active-deployments/{key}"), 200)
    assert first["partial_result"] is True

    def complete() -> dict[str, Any] | None:
        result = spec.check(tpath, "get", call("GET", f"/v1/telemetry/active-deployments/{key}"), 200)
        return None if result["partial_result"] else dict(result)

    final = sim.wait_for(complete, 5, "complete telemetry")
    assert final == {"retrieval_key": key, "scores": [{"request_id": rid}], "partial_result": False}

    # locations, beacons, IP lookups
    locations = spec.check("/v1/locations", "get", call("GET", "/v1/locations?tags=true"), 200)["locations"]
    assert len(locations) >= 20 and all(loc["tags"] for loc in locations)
    spec.check("/v1/locations", "get", call("GET", "/v1/locations?app=conf&version=v1"), 200)
    spec.check("/v1/locations/beacons", "get", call("GET", "/v1/locations/beacons"), 200)
    spec.check("/v1/ip", "get", call("GET", "/v1/ip"), 200)
    looked = spec.check("/v1/ip/{ip}/lookup", "get", call("GET", f"/v1/ip/{UK_IP}/lookup"), 200)
    assert looked["location"]["country"]["code"] == "GB"
    many = spec.check(
        "/v1/ips/lookup", "post", call("POST", "/v1/ips/lookup", {"addresses": [UK_IP, "10.0.0.1"]}), 200
    )
    assert [a["ip_address"] for a in many["addresses"]] == [UK_IP, "10.0.0.1"]
    too_many = {"addresses": [f"8.8.8.{i}" for i in range(21)]}
    assert call("POST", "/v1/ips/lookup", too_many).status_code == 400

    # deployment update, in-container context and self-stop on a second deployment
    upd = "/v1/deployments/{request_id}"
    spec.check(upd, "patch", call("PATCH", f"/v1/deployments/{rid}", {"is_joinable_by_session": True}), 200)
    other = spec.check("/v1/deploy", "post", call("POST", "/v1/deploy", {"app_name": "conf"}), 200)[
        "request_id"
    ]
    sim.wait_status(other, "READY")
    truth = sim.deployment(other)
    ctx = call("GET", truth["context_url"], headers={"authorization": truth["context_token"]})
    spec.check("/v1/context/{request_id}/{security_number}", "get", ctx, 200)
    bad = call("DELETE", truth["delete_url"], headers={"authorization": "wrong"})
    spec.check("/v1/self/stop/{request_id}/{access_point_id}", "delete", bad, 401)
    own = call("DELETE", truth["delete_url"], headers={"authorization": truth["delete_token"]})
    spec.check("/v1/self/stop/{request_id}/{access_point_id}", "delete", own, 200)

    # session and deployment endings
    spec.check("/v1/session/{session_id}", "delete", call("DELETE", f"/v1/session/{sid}"), 200)
    spec.check("/v1/session/{session_id}", "delete", call("DELETE", f"/v1/session/{sid}"), 410)
    spec.check("/v1/session/{session_id}", "delete", call("DELETE", "/v1/session/unknown-s"), 404)
    bulk_sessions = {"filters": [{"field": "request_id", "values": [rid], "filter_type": "any"}]}
    spec.check("/v1/sessions/bulk-stop", "post", call("POST", "/v1/sessions/bulk-stop", bulk_sessions), 200)
    starting = spec.check("/v1/deploy", "post", call("POST", "/v1/deploy", {"app_name": "conf"}), 200)[
        "request_id"
    ]
    spec.check("/v1/stop/{request_id}", "delete", call("DELETE", f"/v1/stop/{starting}"), 202)
    spec.check("/v1/stop/{request_id}", "delete", call("DELETE", f"/v1/stop/{rid}"), 200)
    sim.wait_status(rid, "TERMINATED")
    spec.check("/v1/stop/{request_id}", "delete", call("DELETE", f"/v1/stop/{rid}"), 410)
    sim.wait_status(starting, "TERMINATED")
    third = spec.check(
        "/v1/deploy", "post", call("POST", "/v1/deploy", {"app_name": "conf", "tags": ["bulk"]}), 200
    )
    bulk = {"filters": [{"field": "deployment_tags", "values": ["bulk"], "filter_type": "any"}]}
    stopped = spec.check(
        "/v1/deployments/bulk-stop", "post", call("POST", "/v1/deployments/bulk-stop", bulk), 200
    )
    assert stopped == {"processable": [{"request_id": third["request_id"]}]}

    # the webhooks the platform sent, against the same spec
    webhook_sink.wait_for(1, 5, "/deployments")
    webhook_sink.wait_for(1, 5, "/sessions")
    webhook_sink.wait_for(1, 5, "/telemetry")
    for body in webhook_sink.bodies("/deployments"):
        spec.validate("Status", body, "deployment webhook")
    for body in webhook_sink.bodies("/sessions"):
        spec.validate("SessionGet", body, "session webhook")
    for body in webhook_sink.bodies("/telemetry"):
        spec.validate("ActiveDeploymentTelemetryGetResult", body, "telemetry webhook")

    # cleanup endpoints
    spec.check(
        "/v1/app/{app_name}/version/{version_name}", "delete", call("DELETE", "/v1/app/conf/version/v1"), 200
    )
    spec.check(
        "/v1/app/{app_name}/version/{version_name}", "get", call("GET", "/v1/app/conf/version/v1"), 404
    )
    spec.check("/v1/app/{app_name}", "delete", call("DELETE", "/v1/app/conf"), 200)

    assert spec.problems == []
    assert len(spec.checked) >= 45


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "token wrong"}, {"Authorization": "Bearer {token}"}, {"Authorization": "{token}"}],
    ids=["none", "wrong-token", "bearer-scheme", "no-scheme"],
)
@pytest.mark.parametrize("path", ["/v1/locations", "/v1/deployments", "/_sim/state", "/_sim/calls"])
def test_401_without_exactly_the_token(sim: RunningSim, headers: dict[str, str], path: str) -> None:
    sent = {k: v.format(token=sim.token) for k, v in headers.items()}
    r = sim.request("GET", path, headers=sent)
    assert r.status_code == 401 and r.json()["message"]


def test_unknown_paths_and_bad_bodies_answer_json_messages(sim: RunningSim) -> None:
    r = sim.request("GET", "/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    r = sim.client.post("/v1/deploy", content=b"{not json", headers=sim.headers)
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = sim.request("POST", "/v1/session", {"app_name": "x", "ip_list": "1.2.3.4"})
    assert r.status_code == 400 and r.json()["message"].startswith("ip_list")
    r = sim.request("GET", "/v1/deployments?limit=0")
    assert r.status_code == 400 and r.json()["message"].startswith("limit")


def test_deployments_list_pages(sim: RunningSim) -> None:
    sim.setup_app()
    made = {sim.deploy() for _ in range(5)}
    first = sim.request("GET", "/v1/deployments?page=1&limit=2").json()
    assert first["total_count"] == 5 and len(first["data"]) == 2
    assert first["pagination"]["has_next"] and first["pagination"]["paginator"]["num_pages"] == 3
    seen = set()
    for page in (1, 2, 3):
        seen |= {
            d["request_id"] for d in sim.request("GET", f"/v1/deployments?page={page}&limit=2").json()["data"]
        }
    assert seen == made
    last = sim.request("GET", "/v1/deployments?page=3&limit=2").json()["pagination"]
    assert not last["has_next"] and last["previous_page_number"] == 2


def test_in_container_calls_take_the_deployment_token_not_the_account_one(sim: RunningSim) -> None:
    sim.setup_app()
    rid = sim.deploy()
    sim.wait_status(rid, "READY")
    truth = sim.deployment(rid)
    assert sim.request("GET", truth["context_url"]).status_code == 401  # the account token is not enough
    prefixed = {"authorization": f"token {truth['context_token']}"}
    assert sim.request("GET", truth["context_url"], headers=prefixed).json()["request_id"] == rid
    r = sim.request("DELETE", truth["delete_url"], headers={"authorization": truth["delete_token"]})
    assert r.status_code == 200 and r.json()["deployment_summary"]["current_status"] == "Status.TERMINATING"
    assert sim.deployment(rid)["end_reason"] == "self_stop"
