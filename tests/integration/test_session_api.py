"""The session API over HTTP against Redis and the simulator: placement, reads, users, deletes,
validation, selectors, pinning, draining, and concurrency on the last free socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleet.store import Store
from tests.integration.allocator_web import UK_PLAYERS, FleetWeb, fleet_web

__all__ = ["fleet_web"]  # the fixture, imported for pytest

BODY = {"app_name": "game", "version_name": "v1"}


def body(*ips: str, **extra: Any) -> dict[str, Any]:
    return {**BODY, "ip_list": list(ips or UK_PLAYERS), **extra}


async def test_session_is_placed_and_read_back_with_connection_details(
    fleet_web: FleetWeb, store: Store
) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body())
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["app"] == "game" and created["version"] == "v1"
        assert created["linked"] is True and created["deployment_request_id"] == rid
        sid = created["session_id"]
        got = (await api.get(f"/v1/session/{sid}")).json()
    assert got["session_id"] == sid and got["linked"] is True and got["ready"] is True
    assert got["status"] == "Status.READY" and got["kind"] == "SEATS" and got["user_count"] == 2
    dep = got["deployment"]
    assert dep["request_id"] == rid and dep["fqdn"] and dep["public_ip"] and dep["ports"]
    assert fleet_web.used(rid) == 2  # Seat: one socket per player, on the platform too
    d = await store.deployments.get(rid, 0.0)
    assert d is not None and d.committed == 2 and d.reserved == 0
    record = await store.sessions.get(sid)
    assert record is not None and record.platform_session_id and record.platform_session_id != sid


async def test_ten_concurrent_requests_for_one_free_socket_give_one_placement(
    fleet_web: FleetWeb, store: Store
) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body("81.2.69.10", "81.2.69.11", "81.2.69.12"))
        assert r.json()["linked"] is True  # 3 of 4 sockets taken: one left
        answers = await asyncio.gather(
            *(api.post("/v1/session", json=body(f"81.2.69.{20 + i}")) for i in range(10))
        )
    linked = [a for a in answers if a.status_code == 200 and a.json()["linked"]]
    assert len(linked) == 1, [(a.status_code, a.text[:80]) for a in answers]
    # No fleet policy can add capacity: the others are refused at once with Retry-After.
    refused = [a for a in answers if a.status_code == 503]
    assert len(refused) == 9 and all(a.headers.get("retry-after") for a in refused)
    assert fleet_web.used(rid) == 4  # ground truth: exactly full, never over
    d = await store.deployments.get(rid, 0.0)
    assert d is not None and d.committed == 4 and d.reserved == 0


async def test_private_reserved_and_malformed_addresses_get_422_naming_them(fleet_web: FleetWeb) -> None:
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body("81.2.69.160", "10.0.0.7"))
        assert r.status_code == 422 and r.json()["message"].startswith("ip_list[1]: '10.0.0.7' is a private")
        r = await api.post("/v1/session", json=body("81.2.69.160", "999.1.1.1"))
        assert r.status_code == 422 and "ip_list[1]: '999.1.1.1' is not an IP address" in r.json()["message"]
        geo = {**BODY, "geo_ip_list": [{"ip": "192.0.2.5", "latitude": 1.0, "longitude": 2.0}]}
        r = await api.post("/v1/session", json=geo)
        assert r.status_code == 422 and r.json()["message"].startswith("geo_ip_list[0].ip: '192.0.2.5'")
        r = await api.post("/v1/session", json={"version_name": "v1", "ip_list": UK_PLAYERS})
        assert r.status_code == 422 and "app_name" in r.json()["message"]
        r = await api.post("/v1/session", json={**BODY})
        assert r.status_code == 422 and r.json()["message"].startswith("ip_list: at least one player")
        r = await api.post("/v1/session", json=body(webhook_url="ftp://x"))
        assert r.status_code == 422 and "webhook_url" in r.json()["message"]
        r = await api.post("/v1/session?wait=abc", json=body())
        assert r.status_code == 422 and r.json()["message"].startswith("wait:")
        r = await api.post("/v1/session", json={**BODY, "version_name": "nope", "ip_list": UK_PLAYERS})
        assert r.status_code == 422 and r.json()["message"].startswith("version_name:")


async def test_delete_frees_its_sockets_and_the_platform_session(fleet_web: FleetWeb, store: Store) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        sid = (await api.post("/v1/session", json=body())).json()["session_id"]
        assert fleet_web.used(rid) == 2
        r = await api.delete(f"/v1/session/{sid}")
        assert r.status_code == 200 and r.json()["session_id"] == sid
        assert fleet_web.used(rid) == 0
        d = await store.deployments.get(rid, 0.0)
        assert d is not None and d.committed == 0 and d.sessions == 0
        assert (await api.get(f"/v1/session/{sid}")).status_code == 404
        assert (await api.delete(f"/v1/session/{sid}")).status_code == 410
        assert (await api.delete("/v1/session/unknown-s")).status_code == 404


async def test_users_beyond_free_sockets_get_422(fleet_web: FleetWeb, store: Store) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        sid = (await api.post("/v1/session", json=body())).json()["session_id"]
        r = await api.put(
            f"/v1/session/{sid}/users", json={"ip_list": ["81.2.69.1", "81.2.69.2", "81.2.69.3"]}
        )
        assert r.status_code == 422 and r.json()["message"].startswith("ip_list:")
        assert fleet_web.used(rid) == 2
        r = await api.put(f"/v1/session/{sid}/users", json={"ip_list": ["81.2.69.1", "81.2.69.2"]})
        assert r.status_code == 200 and len(r.json()["session_users"]) == 4
        assert fleet_web.used(rid) == 4
        r = await api.put(f"/v1/session/{sid}/users", json={"ip_list": ["10.1.1.1"]})
        assert r.status_code == 422 and r.json()["message"].startswith("ip_list[0]:")
        r = await api.request("DELETE", f"/v1/session/{sid}/users", json={"ip_list": ["81.2.69.1"]})
        assert r.status_code == 200 and len(r.json()["session_users"]) == 3
        assert fleet_web.used(rid) == 3
        listed = (await api.get(f"/v1/session/{sid}/users")).json()["session_users"]
        assert sorted(u["ip"] for u in listed) == sorted([*UK_PLAYERS, "81.2.69.2"])
    d = await store.deployments.get(rid, 0.0)
    assert d is not None and d.committed == 3


async def test_list_sessions_paginates(fleet_web: FleetWeb, store: Store) -> None:
    await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        ids = [
            (await api.post("/v1/session", json=body(f"81.2.69.{i}"))).json()["session_id"] for i in (1, 2, 3)
        ]
        page1 = (await api.get("/v1/sessions?limit=2")).json()
        page2 = (await api.get("/v1/sessions?limit=2&page=2")).json()
        assert (await api.get("/v1/sessions?limit=0")).status_code == 422
    assert page1["total_count"] == 3 and page1["pagination"]["has_next"] is True
    assert page2["pagination"]["has_previous"] is True and page2["pagination"]["has_next"] is False
    seen = [s["session_id"] for s in page1["data"] + page2["data"]]
    assert sorted(seen) == sorted(ids)
    assert all(s["linked"] and s["kind"] == "SEATS" and s["user_count"] == 1 for s in page1["data"])


async def test_a_session_never_lands_on_a_draining_deployment(fleet_web: FleetWeb, store: Store) -> None:
    near = await fleet_web.ready_deployment(store, "London")
    far = await fleet_web.ready_deployment(store, "Sydney")
    assert (await store.deployments.try_drain(near, 0.0)).ok  # the scaler picked it for stopping
    async with fleet_web.http() as api:
        first = (await api.post("/v1/session", json=body())).json()
        assert first["deployment_request_id"] == far  # the nearest is draining: the far one it is
        assert (await store.deployments.try_drain(far, 0.0)).ok is False  # in use: cannot drain now
        await api.delete(f"/v1/session/{first['session_id']}")
        assert (await store.deployments.try_drain(far, 1e12)).ok  # empty again: the scaler wins
        r = await api.post("/v1/session", json=body())
        assert r.status_code == 503  # both draining, no policy: nothing can take it
    assert fleet_web.used(near) == 0


async def test_selectors_filter_on_tags_and_tag_only_does_not(fleet_web: FleetWeb, store: Store) -> None:
    plain = await fleet_web.ready_deployment(store, "London")
    ranked = await fleet_web.ready_deployment(store, "Tokyo", tags=["ranked"])
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body(selectors=[{"tag": "ranked"}]))
        assert r.json()["deployment_request_id"] == ranked  # far, but the only one with the tag
        r = await api.post("/v1/session", json=body(selectors=[{"tag": "casual", "tag_only": True}]))
        assert r.json()["deployment_request_id"] == plain  # tag_only: tags the session, filters nothing
        r = await api.post("/v1/session", json=body(selectors=[{"tag": "missing"}]))
        assert r.status_code == 503


async def test_pinned_deployment_is_used_or_unprocessable(
    fleet_web: FleetWeb, store: Store, webhook_sink: Any
) -> None:
    await fleet_web.ready_deployment(store, "London")
    far = await fleet_web.ready_deployment(store, "Tokyo")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body(deployment_request_id=far))
        assert r.json()["deployment_request_id"] == far and r.json()["linked"] is True
        full = body("81.2.69.1", "81.2.69.2", "81.2.69.3", deployment_request_id=far,
                    webhook_url=f"{webhook_sink.url}/hook")  # fmt: skip
        r = await api.post("/v1/session", json=full)  # 2 of 4 used: 3 more do not fit
        assert r.status_code == 200 and r.json()["status"] == "Status.UNPROCESSABLE"
    hook = webhook_sink.wait_for(1)[0].body
    assert hook["status"] == "Status.UNPROCESSABLE" and hook["linked"] is False
    assert fleet_web.used(far) == 2


async def test_client_webhook_called_when_linked(
    fleet_web: FleetWeb, store: Store, webhook_sink: Any
) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body(webhook_url=f"{webhook_sink.url}/s"))
    hook = webhook_sink.wait_for(1)[0].body
    assert hook["session_id"] == r.json()["session_id"] and hook["linked"] is True
    assert hook["deployment"]["request_id"] == rid and hook["deployment"]["fqdn"]


async def test_location_constraint_restricts_candidates(fleet_web: FleetWeb, store: Store) -> None:
    await fleet_web.ready_deployment(store, "London")
    tokyo = await fleet_web.ready_deployment(store, "Tokyo")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body(country="Japan"))
        assert r.json()["deployment_request_id"] == tokyo


async def test_unknown_session_404(fleet_web: FleetWeb) -> None:
    async with fleet_web.http() as api:
        assert (await api.get("/v1/session/nope-s")).status_code == 404
        assert (await api.get("/v1/session/nope-s/users")).status_code == 404
        r = await api.put("/v1/session/nope-s/users", json={"ip_list": ["81.2.69.1"]})
        assert r.status_code == 404


@pytest.mark.parametrize("path", ["/v1/session", "/v1/sessions"])
async def test_api_requires_token(fleet_web: FleetWeb, path: str) -> None:
    async with fleet_web.http() as api:
        r = await api.request(
            "POST" if path == "/v1/session" else "GET", path, json=body(), headers={"Authorization": ""}
        )
    assert r.status_code == 401
