"""The whole service as real processes: a fleet scales to its minimum, a session is placed on the
new deployment and read back with its connection details (issue 2's end to end)."""

from __future__ import annotations

import pytest

from tests.fixtures.stack import E2E

pytestmark = pytest.mark.e2e


def test_fleet_scales_up_and_places_a_session(e2e_stack: E2E) -> None:
    e = e2e_stack
    e.create_app_version(sockets=4)
    assert e.api.post("/v1/fleet", json={"name": "f", "enabled": True}).status_code == 200
    assert e.api.put("/v1/fleet/f/app/game/version/v1").status_code == 200
    r = e.api.post(
        "/v1/fleet/f/policies",
        json={
            "name": "eu",
            "enabled": True,
            "type": "Location",
            "minimum": 1,
            "maximum": 3,
            "threshold": 0.8,
            "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
        },
    )
    assert r.status_code == 200, r.text

    ready = e.wait_for(
        "a READY deployment",
        lambda: [
            d for d in e.deployments() if str(d["current_status"]).endswith("READY") and d["policy"] == "eu"
        ],
    )
    assert ready[0]["fleet"] == "f"

    r = e.api.post(
        "/v1/session",
        json={"app_name": "game", "version_name": "v1", "ip_list": ["81.2.69.160", "81.2.69.161"]},
    )
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    linked = e.wait_for(
        "the session linked",
        lambda: (lambda b: b if b.get("linked") else None)(e.api.get(f"/v1/session/{sid}").json()),
        timeout_s=30,
    )
    assert linked["deployment"]["request_id"] == ready[0]["request_id"]
    assert linked["deployment"]["fqdn"]

    # 2 of 4 sockets used: the platform's own view agrees.
    truth = e.platform.get(f"/v1/status/{ready[0]['request_id']}").json()
    assert int(truth["sockets_usage"]) == 2
