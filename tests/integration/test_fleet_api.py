"""The Fleet API through the real ASGI app (TestClient), the suite's Redis and the simulator for
app versions: the seed's paths and payloads, 422 naming every bad field with nothing changed,
links refusing non-session versions, deletes that never stop deployments unless asked."""

from __future__ import annotations

from typing import Any

import pytest

from codema.client import CodemaClient
from fleet.models import StatusReport
from tests.fixtures.sim import RunningSim
from tests.fixtures.web import API_TOKEN, WebApp, WebFactory

AUTH = {"Authorization": f"token {API_TOKEN}"}
POLICY: dict[str, Any] = {
    "name": "eu",
    "enabled": True,
    "type": "Location",
    "minimum": 1,
    "maximum": 3,
    "threshold": 0.8,
    "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
}


@pytest.fixture
def api(web_factory: WebFactory, sim: RunningSim) -> WebApp:
    sim.setup_app("game", "v1", kind="Seat", sockets=4, empty_ttl=5)
    sim.setup_app("game", "plain", kind="Default", sockets=1)
    return web_factory(client=CodemaClient(sim.base_url, sim.token, max_attempts=1))


def call(api: WebApp, method: str, path: str, json: Any = None, **kw: Any) -> Any:
    return api.client.request(method, path, json=json, headers=AUTH, **kw)


def fields_of(response: Any) -> set[str]:
    assert response.status_code == 422, response.text
    return {e["field"] for e in response.json()["errors"]}


def make_fleet(api: WebApp, name: str = "f", **extra: Any) -> dict[str, Any]:
    r = call(api, "POST", "/v1/fleet", {"name": name, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- fleets ----------------------------------------------------------------------------------------
def test_fleet_create_get_list_patch_delete(api: WebApp) -> None:
    body = make_fleet(api)
    assert body["name"] == "f" and body["enabled"] is False  # the seed's default
    assert set(body) >= {"name", "enabled", "create_time", "last_updated"}
    assert call(api, "POST", "/v1/fleet", {"name": "f"}).status_code == 409
    for name in ("g", "h"):
        make_fleet(api, name, enabled=True)

    page = call(api, "GET", "/v1/fleets", params={"page": 2, "limit": 2}).json()
    assert [f["name"] for f in page["fleets"]] == ["h"]
    assert page["pagination"] == {
        "number": 2,
        "next_page_number": None,
        "previous_page_number": 1,
        "paginator": {"num_pages": 2},
        "has_next": False,
        "has_previous": True,
    }
    assert len(call(api, "GET", "/v1/fleets").json()["fleets"]) == 3  # default limit 10

    r = call(api, "PATCH", "/v1/fleet/f", {"enabled": True})
    assert r.status_code == 200 and r.json()["enabled"] is True
    assert call(api, "GET", "/v1/fleet/f").json()["enabled"] is True

    assert call(api, "POST", "/v1/fleet/f/policies", POLICY).status_code == 200
    r = call(api, "PATCH", "/v1/fleet/f", {"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert call(api, "GET", "/v1/fleet/f").status_code == 404
    assert call(api, "GET", "/v1/fleet/renamed/policies/eu").status_code == 200  # policies follow
    assert call(api, "PATCH", "/v1/fleet/renamed", {"name": "g"}).status_code == 409

    r = call(api, "DELETE", "/v1/fleet/renamed")
    assert r.status_code == 200 and "message" in r.json()
    assert call(api, "GET", "/v1/fleet/renamed").status_code == 404
    assert call(api, "DELETE", "/v1/fleet/renamed").status_code == 404


def test_fleet_validation_names_each_field(api: WebApp) -> None:
    assert fields_of(call(api, "POST", "/v1/fleet", {"enabled": "yes"})) == {"name", "enabled"}
    assert fields_of(call(api, "POST", "/v1/fleet", {"name": "a/b"})) == {"name"}
    assert fields_of(call(api, "POST", "/v1/fleet", {"name": "x" * 65})) == {"name"}
    assert fields_of(call(api, "POST", "/v1/fleet", {"name": "ok", "enabld": True})) == {"enabld"}
    assert call(api, "POST", "/v1/fleet", content=b"[1]").status_code == 400
    make_fleet(api)
    assert fields_of(call(api, "PATCH", "/v1/fleet/f", {"enabled": 1})) == {"enabled"}
    assert call(api, "GET", "/v1/fleets").json()["fleets"][0]["enabled"] is False
    assert call(api, "GET", "/v1/fleets", params={"limit": "lots"}).status_code == 422


def test_the_api_needs_the_token(api: WebApp) -> None:
    assert api.client.post("/v1/fleet", json={"name": "f"}).status_code == 401
    assert api.client.get("/v1/fleets", headers={"Authorization": "token wrong"}).status_code == 401


# --- policies ------------------------------------------------------------------------------------
def test_policy_crud_with_the_seeds_payloads(api: WebApp) -> None:
    make_fleet(api)
    r = call(api, "POST", "/v1/fleet/f/policies", POLICY)
    assert r.status_code == 200, r.text
    created = r.json()
    assert {k: created[k] for k in POLICY} == POLICY
    assert created["idle_s"] is None and created["cooldown_s"] == 60.0 and created["hysteresis"] == 0.05
    assert call(api, "POST", "/v1/fleet/f/policies", POLICY).status_code == 409
    coords = {**POLICY, "name": "near", "type": "Coordinates", "data": {"latitude": 45.5, "longitude": -73.6}}
    assert call(api, "POST", "/v1/fleet/f/policies", coords).status_code == 200
    fast = [{"field": "location_tags", "values": ["cpu=high"], "filter_type": "any"}]
    tag = {**POLICY, "name": "fast", "type": "Tag", "data": {"filters": fast}}
    assert call(api, "POST", "/v1/fleet/f/policies", tag).status_code == 200

    listed = call(api, "GET", "/v1/fleet/f/policies", params={"limit": 2}).json()
    assert [p["name"] for p in listed["policies"]] == ["eu", "fast"] and listed["pagination"]["has_next"]

    r = call(api, "PATCH", "/v1/fleet/f/policies/eu", {"maximum": 5, "idle_s": 30, "cooldown_s": 10})
    assert r.status_code == 200 and r.json()["maximum"] == 5 and r.json()["idle_s"] == 30
    got = call(api, "GET", "/v1/fleet/f/policies/eu").json()
    assert got["maximum"] == 5 and got["status"] == {"degraded": False, "last_error": None, "error_streak": 0}

    assert call(api, "DELETE", "/v1/fleet/f/policies/eu").status_code == 204
    assert call(api, "GET", "/v1/fleet/f/policies/eu").status_code == 404
    assert call(api, "GET", "/v1/fleet/nope/policies").status_code == 404


@pytest.mark.parametrize(
    ("change", "bad"),
    [
        ({"threshold": 1.5}, {"threshold"}),
        ({"threshold": 0.05, "minimum": 0}, {"threshold", "minimum"}),
        ({"minimum": True}, {"minimum"}),  # JSON true is not the integer 1
        ({"maximum": "3"}, {"maximum"}),
        ({"minimum": 4, "maximum": 3}, {"maximum"}),  # maximum >= minimum
        ({"type": "Region"}, {"type"}),
        ({"type": "Coordinates"}, {"data.latitude", "data.longitude"}),  # filters are no point
        (
            {"data": {"filters": [{"field": "planet", "values": ["x"], "filter_type": "any"}]}},
            {"data.filters.0.field"},
        ),
        ({"data": {"filters": []}}, {"data.filters"}),
        ({"idle_s": -1, "hysteresis": 2}, {"idle_s", "hysteresis"}),
        ({"cooldown": 5}, {"cooldown"}),  # a typo of cooldown_s is not silently ignored
    ],
)
def test_bad_policy_values_are_422_and_change_nothing(
    api: WebApp, change: dict[str, Any], bad: set[str]
) -> None:
    make_fleet(api)
    assert fields_of(call(api, "POST", "/v1/fleet/f/policies", {**POLICY, **change})) == bad
    assert call(api, "GET", "/v1/fleet/f/policies").json()["policies"] == []

    assert call(api, "POST", "/v1/fleet/f/policies", POLICY).status_code == 200
    before = call(api, "GET", "/v1/fleet/f/policies/eu").json()
    assert fields_of(call(api, "PATCH", "/v1/fleet/f/policies/eu", change)) == bad
    assert call(api, "GET", "/v1/fleet/f/policies/eu").json() == before  # the previous policy stays


def test_policy_create_requires_the_seeds_fields(api: WebApp) -> None:
    make_fleet(api)
    r = call(api, "POST", "/v1/fleet/f/policies", {"name": "eu"})
    assert fields_of(r) == {"enabled", "type", "minimum", "maximum", "threshold", "data"}


# --- links -----------------------------------------------------------------------------------------
def test_link_fetches_the_version_and_refuses_non_session_ones(api: WebApp) -> None:
    make_fleet(api)
    r = call(api, "PUT", "/v1/fleet/f/app/game/version/v1")
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("app", "app_version", "fleet")} == {
        "app": "game",
        "app_version": "v1",
        "fleet": "f",
    }
    facts = api.call(api.store.fleets.get_app_version, "game", "v1")
    assert facts is not None and (facts.kind, facts.sockets, facts.empty_ttl_min) == ("Seat", 4, 5)

    assert fields_of(call(api, "PUT", "/v1/fleet/f/app/game/version/plain")) == {"session_config.kind"}
    assert call(api, "PUT", "/v1/fleet/f/app/game/version/nope").status_code == 404
    assert call(api, "PUT", "/v1/fleet/nope/app/game/version/v1").status_code == 404
    assert [(x.app, x.version) for x in api.call(api.store.fleets.links, "f")] == [("game", "v1")]

    assert call(api, "DELETE", "/v1/fleet/f/app/game/version/v1").status_code == 204
    assert call(api, "DELETE", "/v1/fleet/f/app/game/version/v1").status_code == 404


# --- deletes never stop deployments unless asked -------------------------------------------------
def _owned_deployment(api: WebApp, rid: str, policy: str = "eu") -> None:
    async def record() -> None:
        now = api.services.clock()
        await api.store.deployments.apply(
            StatusReport(request_id=rid, status_raw="Status.READY", usage=1), now
        )
        await api.store.deployments.record_owner(
            rid, fleet="f", policy=policy, intent="i", app="game", version="v1", now=now
        )

    api.call(record)


def test_delete_policy_keeps_deployments_unless_asked(api: WebApp) -> None:
    make_fleet(api)
    call(api, "POST", "/v1/fleet/f/policies", POLICY)
    call(api, "POST", "/v1/fleet/f/policies", {**POLICY, "name": "us"})
    _owned_deployment(api, "aaaaaaaaaaaa", "eu")
    _owned_deployment(api, "bbbbbbbbbbbb", "us")

    assert fields_of(
        call(api, "DELETE", "/v1/fleet/f/policies/eu", params={"stop_deployments": "maybe"})
    ) == {"stop_deployments"}
    assert call(api, "DELETE", "/v1/fleet/f/policies/eu").status_code == 204
    assert api.call(api.store.fleets.retiring) == {}

    assert (
        call(api, "DELETE", "/v1/fleet/f/policies/us", params={"stop_deployments": "true"}).status_code == 204
    )
    assert set(api.call(api.store.fleets.retiring)) == {"bbbbbbbbbbbb"}  # stopped once empty, by the scaler


def test_delete_fleet_with_stop_deployments_retires_them(api: WebApp) -> None:
    make_fleet(api)
    call(api, "POST", "/v1/fleet/f/policies", POLICY)
    _owned_deployment(api, "cccccccccccc")
    r = call(api, "DELETE", "/v1/fleet/f", params={"stop_deployments": "true"})
    assert r.status_code == 200 and r.json()["stopping_deployments"] == 1
    assert set(api.call(api.store.fleets.retiring)) == {"cccccccccccc"}


# --- decisions ---------------------------------------------------------------------------------
def test_decisions_are_listed_newest_first(api: WebApp) -> None:
    make_fleet(api)
    for i in range(3):
        api.call(
            api.store.fleets.add_decision, "f", {"at": i, "policy": "eu" if i else "us", "reason": "steady"}
        )
    body = call(api, "GET", "/v1/fleet/f/decisions", params={"limit": 2}).json()
    assert [d["at"] for d in body["decisions"]] == [2, 1]
    only = call(api, "GET", "/v1/fleet/f/decisions", params={"policy": "us"}).json()["decisions"]
    assert [d["at"] for d in only] == [0]
    assert call(api, "GET", "/v1/fleet/nope/decisions").status_code == 404
