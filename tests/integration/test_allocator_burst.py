"""A burst of players onto a full fleet, through every real process (web, scaler, worker, simulator):
the waiting sessions' sockets are the demand, so the scaler creates ceil(N / sockets) deployments,
not one per session, and every session is linked once they are READY."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.fixtures.stack import E2E

pytestmark = pytest.mark.e2e

SOCKETS = 4
BURST = 10  # players, one per session: ceil(10 / 4) = 3 new deployments


def _ready(e: E2E) -> list[dict[str, Any]]:
    return [d for d in e.deployments() if str(d["current_status"]).endswith("READY") and d["policy"] == "eu"]


def test_burst_onto_a_full_fleet_creates_ceil_n_over_sockets_deployments(e2e_stack: E2E) -> None:
    e = e2e_stack
    e.create_app_version(sockets=SOCKETS)
    assert e.api.post("/v1/fleet", json={"name": "f", "enabled": True}).status_code == 200
    assert e.api.put("/v1/fleet/f/app/game/version/v1").status_code == 200
    policy = {
        "name": "eu", "enabled": True, "type": "Location", "minimum": 1, "maximum": 8,
        # threshold 1: only the waiting demand asks for capacity, so the count is exact.
        "threshold": 1.0,
        "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
    }  # fmt: skip
    assert e.api.post("/v1/fleet/f/policies", json=policy).status_code == 200
    first = e.wait_for("the minimum deployment READY", lambda: _ready(e))[0]["request_id"]
    full = {"app_name": "game", "version_name": "v1",
            "ip_list": ["81.2.69.1", "81.2.69.2", "81.2.69.3", "81.2.69.4"]}  # fmt: skip
    r = e.api.post("/v1/session", json=full)
    assert r.status_code == 200 and r.json()["linked"], r.text  # the fleet is now full

    def one(i: int) -> Any:
        return e.api.post(
            "/v1/session", json={"app_name": "game", "version_name": "v1", "ip_list": [f"81.2.69.{100 + i}"]}
        )

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(one, range(BURST)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    ids = [a.json()["session_id"] for a in answers]
    assert all(a.json()["status"] == "Status.WAITING" for a in answers)

    most = 0

    def all_linked() -> bool:
        nonlocal most
        most = max(most, len([d for d in e.deployments() if d["policy"] == "eu"]))
        return all(e.api.get(f"/v1/session/{sid}").json().get("linked") for sid in ids)

    e.wait_for("every burst session linked", all_linked, timeout_s=90, every_s=0.5)
    created = [d for d in e.deployments() if d["policy"] == "eu" and d["request_id"] != first]
    assert len(created) == math.ceil(BURST / SOCKETS), created
    assert most == 1 + math.ceil(BURST / SOCKETS)  # never more, at any point we looked
    placed = {e.api.get(f"/v1/session/{sid}").json()["deployment"]["request_id"] for sid in ids}
    assert placed <= {d["request_id"] for d in created}
    for d in created:  # the platform's own counts: nothing overbooked
        truth = e.platform.get(f"/v1/status/{d['request_id']}").json()
        assert int(truth["sockets_usage"]) <= SOCKETS
