"""A real Prometheus (Debian's binary) scrapes the running stack during a short demo-like run:
a policy scales to its minimum, a session is placed, and the core metrics come back through
Prometheus' HTTP API; its rule manager loads dashboards/alerts.yml; every dashboard panel renders."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.dashboard_png import graph_panels, load_dashboards, render
from fleet.prometheus import PrivatePrometheus, prometheus_binary
from tests.fixtures.stack import E2E
from tests.unit.dashboards_promql import run_promtool

pytestmark = pytest.mark.e2e

FORBIDDEN_LABELS = {"session_id", "session", "player", "ip", "request_id", "deployment", "intent", "token"}
POLICY = {
    "name": "eu",
    "enabled": True,
    "type": "Location",
    "minimum": 1,
    "maximum": 3,
    "threshold": 0.8,
    "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
}


@pytest.fixture
def prometheus(e2e_stack: E2E) -> Iterator[PrivatePrometheus]:
    if prometheus_binary() is None:
        pytest.fail("prometheus is not installed: `make deps` installs Debian's prometheus package")
    prom = PrivatePrometheus(e2e_stack.stack.metrics_targets(), scrape_interval_s=1.0).start()
    try:
        yield prom
    finally:
        prom.cleanup()


def labels_in(exposition: str) -> set[str]:
    return {
        name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        for name in sample.labels
    }


def scalar(prom: PrivatePrometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def place_one_session(e: E2E) -> str:
    e.create_app_version(sockets=4)
    assert e.api.post("/v1/fleet", json={"name": "f", "enabled": True}).status_code == 200
    assert e.api.put("/v1/fleet/f/app/game/version/v1").status_code == 200
    r = e.api.post("/v1/fleet/f/policies", json=POLICY)
    assert r.status_code == 200, r.text
    e.wait_for(
        "a READY deployment",
        lambda: [d for d in e.deployments() if str(d["current_status"]).endswith("READY")],
    )
    r = e.api.post("/v1/session", json={"app_name": "game", "version_name": "v1", "ip_list": ["81.2.69.160"]})
    assert r.status_code == 200, r.text
    sid = str(r.json()["session_id"])
    e.wait_for("the session linked", lambda: e.api.get(f"/v1/session/{sid}").json().get("linked"), 30)
    return sid


def test_prometheus_reads_the_service_metrics_back(
    e2e_stack: E2E, prometheus: PrivatePrometheus, tmp_path: Path
) -> None:
    e, prom = e2e_stack, prometheus
    place_one_session(e)

    # First data arrives a few seconds after Prometheus starts: poll its API, never sleep blindly.
    placed = e.wait_for(
        "the placement counter in Prometheus",
        lambda: scalar(prom, 'sum(fleet_allocator_placements_total{result="linked"})'),
        timeout_s=45,
        every_s=1.0,
    )
    assert placed == 1.0
    # The dashboards plot rate(), which needs two samples in its window: wait for the second scrape
    # (CI once drew "Placements by result" from a single sample: no series).
    e.wait_for(
        "a second sample of the placement counter",
        lambda: (
            (scalar(prom, 'max(count_over_time(fleet_allocator_placements_total{result="linked"}[5m]))') or 0)
            >= 2
        ),
        timeout_s=30,
        every_s=1.0,
    )
    current = e.wait_for(
        "the leader's deployment gauge in Prometheus",
        lambda: scalar(
            prom,
            'max(fleet_scaler_current_deployments{fleet="f", policy="eu"} '
            "and on (job, instance) (fleet_scaler_is_leader == 1))",
        ),
        timeout_s=30,
        every_s=1.0,
    )
    assert current >= 1.0

    # Every process's own exposition, as scraped, passes promtool's lint.
    for family, hosts in e.stack.metrics_targets().items():
        for host in hosts:
            body = httpx.get(f"http://{host}/metrics", timeout=10).text
            check = run_promtool("check", "metrics", stdin=body)
            assert check.returncode == 0, f"{family} {host}: {check.stdout}{check.stderr}"
            assert not FORBIDDEN_LABELS & labels_in(body), f"{family}: unbounded label in {body[:2000]}"

    health = prom.targets_health()
    assert {key.split()[0] for key in health} == {"fleet-web", "fleet-scaler", "fleet-worker"}, health
    assert set(health.values()) == {"up"}, health
    assert scalar(prom, "min(fleet_redis_up)") == 1.0
    assert scalar(prom, "sum(fleet_scaler_is_leader)") == 1.0
    assert scalar(prom, "max(fleet_rq_workers)") == 1.0  # the queue collector in the scaler sees the worker
    assert (scalar(prom, 'sum(fleet_scaler_actions_total{kind="create", result="created"})') or 0) >= 1.0

    # One key=value line per decision and per placement; no secret in any service log.
    group = e.stack.group
    assert group is not None
    logs = {name: group.logs(name, tail=200_000) for name in ("web0", "scaler0", "worker0")}
    decisions = [ln for ln in logs["scaler0"].splitlines() if "event=decision " in ln]
    assert decisions and all(f in decisions[0] for f in ("fleet=f", "policy=eu", "reason=", "outcome="))
    assert any("event=placement " in ln for ln in logs["web0"].splitlines()), logs["web0"][-3000:]
    for secret in (e.stack.platform_token, e.stack.api_token, e.stack.webhook_secret):
        assert not [name for name, text in logs.items() if secret in text]

    rules = prom.rules()
    assert len(rules) >= 10 and set(rules.values()) <= {"ok", "unknown"}, rules

    # The dashboards drawn from this Prometheus: one picture per panel, core panels not empty.
    paths = render(prom, tmp_path, prom.started_at, time.time())
    panels = [p for board in load_dashboards() for p in graph_panels(board)]
    assert len(paths) == len(panels) + len(load_dashboards())
    assert all(p.stat().st_size > 5000 for p in paths)
    drawn = {row["panel"]: row for row in json.loads((tmp_path / "index.json").read_text())}
    for title in ("Deployments: current, desired, pending", "Placements by result", "Redis reachable"):
        assert drawn[title]["series"] > 0 and not drawn[title].get("errors"), drawn[title]
