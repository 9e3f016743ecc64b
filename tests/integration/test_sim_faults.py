"""One test per simulator fault mode, through the real HTTP server, plus the control endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.sim import RunningSim, WebhookSink

UK_IP = "81.2.69.160"


def test_added_latency(sim: RunningSim) -> None:
    sim.faults(latency_ms=300)
    started = time.monotonic()
    assert sim.request("GET", "/v1/locations").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_error_rate_answers_503_without_acting(sim: RunningSim) -> None:
    sim.setup_app()
    sim.faults(error_rate={"deploy": 1.0})
    r = sim.request("POST", "/v1/deploy", {"app_name": "game"})
    assert r.status_code == 503 and r.json()["message"]
    assert sim.state()["deployments"] == []
    assert sim.request("GET", "/v1/locations").status_code == 200  # other endpoints unaffected
    assert sim.calls()["responses"]["deploy"] == {"503": 1}


def test_rate_limit_answers_429_with_retry_after(sim: RunningSim) -> None:
    sim.setup_app()
    sim.faults(rate_limit="deploy=1")
    first = sim.request("POST", "/v1/deploy", {"app_name": "game"})
    second = sim.request("POST", "/v1/deploy", {"app_name": "game"})
    assert first.status_code == 200
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    assert len(sim.state()["deployments"]) == 1


def test_held_response_times_out_after_the_deploy_happened(sim: RunningSim) -> None:
    sim.setup_app()
    sim.faults(hold_rate={"deploy": 1.0}, hold_s=3)
    with pytest.raises(httpx.ReadTimeout):
        sim.client.post("/v1/deploy", json={"app_name": "game"}, headers=sim.headers, timeout=0.5)
    # the platform acted although the client saw a timeout: exactly one deployment exists
    [made] = sim.wait_for(lambda: sim.state()["deployments"], 5, "the deployment to exist")
    assert made["app"] == "game"


def deploy_to_sink(sim: RunningSim, sink: WebhookSink) -> str:
    sim.setup_app()
    return sim.deploy(webhook_url=f"{sink.url}/deployments?token=secret")


def log_entries(sim: RunningSim, kind: str, subject: str) -> Callable[[], list[dict[str, object]]]:
    return lambda: [w for w in sim.webhooks() if w["kind"] == kind and w["subject"] == subject]


def test_webhook_loss(sim: RunningSim, webhook_sink: WebhookSink) -> None:
    sim.faults(webhook_loss=1.0)
    rid = deploy_to_sink(sim, webhook_sink)
    sim.wait_status(rid, "READY")
    [entry] = sim.wait_for(log_entries(sim, "deployment", rid), 5, "the lost webhook in the log")
    assert entry["result"] == "lost" and entry["url"] == f"{webhook_sink.url}/deployments"  # no ?token
    assert webhook_sink.hooks() == []


def test_webhook_duplicates(sim: RunningSim, webhook_sink: WebhookSink) -> None:
    sim.faults(webhook_dup=1.0)
    rid = deploy_to_sink(sim, webhook_sink)
    first, second = webhook_sink.wait_for(2, 5)
    assert first.body == second.body and first.body["request_id"] == rid
    assert first.path == "/deployments?token=secret"


def test_webhook_reordering(sim: RunningSim, webhook_sink: WebhookSink) -> None:
    sim.setup_app(kind="Match", sockets=10)
    rid = sim.deploy()
    sim.wait_status(rid, "READY")
    sim.faults(webhook_reorder=1.0, reorder_window_s=0.5)
    made = []
    for _ in range(8):
        body = {"app_name": "game", "ip_list": [UK_IP], "webhook_url": f"{webhook_sink.url}/sessions"}
        made.append(sim.request("POST", "/v1/session", body).json()["session_id"])
    arrived = [h.body["session_id"] for h in webhook_sink.wait_for(8, 5)]
    assert sorted(arrived) == sorted(made) and arrived != made


def test_webhook_delay(sim: RunningSim, webhook_sink: WebhookSink) -> None:
    sim.faults(webhook_delay_s=0.6)
    rid = deploy_to_sink(sim, webhook_sink)
    [hook] = webhook_sink.wait_for(1, 5)
    ready_at = sim.deployment(rid)["ready_at"]
    assert hook.at - ready_at >= 0.6


def test_telemetry_webhook_is_retried_five_times(
    sim_factory: Callable[..., RunningSim], webhook_sink: WebhookSink
) -> None:
    sim = sim_factory(webhook_retry_s=0.02, telemetry_delay_s=0.05)
    sim.setup_app()
    rid = sim.deploy()
    sim.wait_status(rid, "READY")
    webhook_sink.status = 500
    body = {"deployments": [rid], "ips": [UK_IP], "webhook_url": f"{webhook_sink.url}/telemetry"}
    key = sim.request("POST", "/v1/telemetry/active-deployments", body).json()["retrieval_key"]
    entries = log_entries(sim, "telemetry", key)
    sim.wait_for(lambda: len(entries()) >= 6, 5, "6 attempts")
    attempts = entries()
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4, 5, 6]
    assert all(a["result"] == "failed" and a["status"] == 500 for a in attempts)
    assert len(webhook_sink.hooks()) == 6


def test_telemetry_webhook_stops_retrying_after_success(
    sim_factory: Callable[..., RunningSim], webhook_sink: WebhookSink
) -> None:
    sim = sim_factory(webhook_retry_s=0.3, telemetry_delay_s=0.05)
    sim.setup_app()
    rid = sim.deploy()
    sim.wait_status(rid, "READY")
    webhook_sink.status = 503
    body = {"deployments": [rid], "ips": [UK_IP], "webhook_url": f"{webhook_sink.url}/telemetry"}
    key = sim.request("POST", "/v1/telemetry/active-deployments", body).json()["retrieval_key"]
    webhook_sink.wait_for(1, 5)
    webhook_sink.status = 200
    sent = sim.wait_for(
        lambda: [a for a in log_entries(sim, "telemetry", key)() if a["result"] == "sent"],
        5,
        "a successful retry",
    )
    assert sent[0]["attempt"] == 2 and len(webhook_sink.hooks()) == 2


def test_failing_deployments_end_in_error_with_webhook(sim: RunningSim, webhook_sink: WebhookSink) -> None:
    sim.faults(fail_deploys=1.0)
    rid = deploy_to_sink(sim, webhook_sink)
    status = sim.wait_status(rid, "ERROR")
    assert status["error"] is True and status["error_detail"]
    [hook] = webhook_sink.wait_for(1, 5)
    assert hook.body["current_status"] == "Status.ERROR"
    assert rid not in [d["request_id"] for d in sim.request("GET", "/v1/deployments").json()["data"]]


def test_stuck_deployments_stay_deploying(sim: RunningSim) -> None:
    sim.faults(stuck_deploys=1.0)
    sim.setup_app()
    rid = sim.deploy()
    sim.wait_status(rid, "DEPLOYING")
    created = sim.deployment(rid)["created"]
    sim.wait_for(lambda: sim.state()["now"] > created + 4 * sim.options.world.boot_s, 5, "four boot times")
    assert sim.deployment(rid)["status"] == "Status.DEPLOYING"
    assert sim.request("DELETE", f"/v1/stop/{rid}").status_code == 202  # waits for READY/ERROR


def test_location_outage(sim: RunningSim) -> None:
    sim.setup_app()
    london = [{"field": "city", "values": ["London"], "filter_type": "any"}]
    rid = sim.deploy(filters=london)
    sim.wait_status(rid, "READY")
    sim.faults(outages=["London"])
    truth = sim.deployment(rid)
    assert truth["status"] == "Status.TERMINATED" and truth["end_reason"] == "outage"
    refused = sim.request("POST", "/v1/deploy", {"app_name": "game", "filters": london})
    assert refused.status_code == 422
    cities = {
        loc["city"] for loc in sim.request("GET", "/v1/locations?app=game&version=v1").json()["locations"]
    }
    assert "London" not in cities and "Paris" in cities
    assert sim.request("POST", "/_sim/faults", {"outages": ["Atlantis"]}).status_code == 400
    sim.faults(outages=[])
    assert sim.request("POST", "/v1/deploy", {"app_name": "game", "filters": london}).status_code == 200


def test_control_endpoint_faults_calls_and_reset(sim: RunningSim) -> None:
    assert sim.faults()["error_rate"] == {}
    bad = sim.request("POST", "/_sim/faults", {"error_rate": {"deploy": 3}})
    assert bad.status_code == 400 and "error_rate.deploy" in bad.json()["message"]
    assert sim.faults(error_rate={"status": 0.5})["error_rate"] == {"status": 0.5}
    sim.setup_app()
    sim.deploy()
    calls = sim.calls()
    assert calls["calls"]["deploy"] == 1 and calls["calls"]["app_create"] == 1
    assert calls["responses"]["version_create"] == {"200": 1}
    sim.reset()
    assert sim.state()["deployments"] == [] and sim.calls()["total"] == 0
    assert sim.faults()["error_rate"] == {}  # back to the start-up faults


def test_start_up_faults(sim_factory: Callable[..., RunningSim]) -> None:
    sim = sim_factory(faults={"error_rate": "locations=1"})
    assert sim.request("GET", "/v1/locations").status_code == 503
