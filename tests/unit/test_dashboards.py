"""The Grafana dashboards and alert rules against the code: generated JSON up to date, structure
Grafana needs, only metrics the service exports, every expression valid PromQL (promtool)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.dashboard_png import graph_panels, rate_interval_s, render, substitute
from tests.unit.dashboards_promql import (
    ALERTS,
    DASHBOARDS,
    PROMETHEUS_OWN,
    alert_rules,
    exported_names,
    load_build,
    metric_names,
    run_promtool,
    variable_selector,
)

GRAFANA = DASHBOARDS / "grafana"


def boards() -> list[dict[str, Any]]:
    files = sorted(GRAFANA.glob("*.json"))
    assert files, f"no dashboard in {GRAFANA}"
    return [json.loads(p.read_text()) for p in files]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and variable query."""
    out = []
    for board in boards():
        for panel in graph_panels(board):
            out += [(f"{board['uid']}: {panel['title']} {t['refId']}", t["expr"]) for t in panel["targets"]]
        for var in board["templating"]["list"]:
            out.append((f"{board['uid']}: variable {var['name']}", variable_selector(var["query"]["query"])))
    return out


def provisioned_uid() -> str:
    doc = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "codema-fleet.yml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


# --- the PromQL name parser the coverage test relies on -----------------------------------------
@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("up", {"up"}, id="bare"),
        pytest.param(
            'sum by (kind, reason) (rate(fleet_a_total{kind=~"x|y", reason!="ok"}[$__rate_interval]))',
            {"fleet_a_total"},
            id="labels-and-grouping-are-not-metrics",
        ),
        pytest.param(
            "histogram_quantile(0.99, sum by (le) (rate(fleet_b_seconds_bucket[5m])))",
            {"fleet_b_seconds_bucket"},
            id="functions-and-numbers",
        ),
        pytest.param(
            "max by (fleet, policy) (fleet_c and on (job, instance) (fleet_d == 1)) > on (fleet) fleet_e",
            {"fleet_c", "fleet_d", "fleet_e"},
            id="set-operators-and-matching",
        ),
        pytest.param(
            "(sum(fleet_f) or vector(0)) < 1 unless fleet_g offset 5m", {"fleet_f", "fleet_g"}, id="kw"
        ),
        pytest.param('label_replace(fleet_h, "dst", "$1", "src", "(.*)")', {"fleet_h"}, id="strings"),
        pytest.param("delta(fleet_i[10m:1m]) > 0", {"fleet_i"}, id="subquery"),
    ],
)
def test_metric_names_parses_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_suffixes_and_collectors() -> None:
    names = exported_names()
    assert {"fleet_platform_calls_total", "fleet_allocator_time_to_session_seconds_bucket"} <= names
    assert {"fleet_redis_up", "fleet_rq_jobs", "fleet_rq_workers"} <= names
    assert "fleet_platform_calls" not in names  # a counter is only ever scraped with `_total`


# --- generated and structurally valid ------------------------------------------------------------
def test_committed_json_matches_build_py() -> None:
    build = load_build()
    expected: dict[str, str] = build.rendered()
    actual = {p.name: p.read_text() for p in GRAFANA.glob("*.json")}
    assert actual == expected, "run `python dashboards/build.py` and commit dashboards/grafana/"


def test_dashboards_are_structurally_valid() -> None:
    uid = provisioned_uid()
    seen_uids = set()
    for board in boards():
        assert board["uid"] not in seen_uids and board["title"] and board["schemaVersion"] >= 36
        seen_uids.add(board["uid"])
        names = {v["name"]: v for v in board["templating"]["list"]}
        assert {"fleet", "policy"} <= set(names)
        for var in names.values():
            assert var["type"] == "query" and var["datasource"]["uid"] == uid
            assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        graphs = list(graph_panels(board))
        assert len(graphs) >= 20
        for panel in graphs:
            where = f"{board['uid']}: {panel['title']}"
            assert panel["type"] in {"timeseries", "stat"}, where
            assert panel["datasource"]["uid"] == uid, where
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
            assert panel["description"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["expr"].strip(), where
                assert "legendFormat" in target, where


def test_panels_sharing_a_row_do_not_overlap() -> None:
    for board in boards():
        cells: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            pos = panel["gridPos"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    doc = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "codema-fleet.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# --- what the issue asks the dashboards to show -------------------------------------------------------
REQUIRED_PANEL_METRICS = {
    "current / desired / pending deployments": {
        "fleet_scaler_current_deployments",
        "fleet_scaler_desired_deployments",
        "fleet_scaler_pending_deployments",
    },
    "utilisation against threshold": {"fleet_scaler_utilisation_ratio", "fleet_scaler_threshold_ratio"},
    "placements by result": {"fleet_allocator_placements_total"},
    "time to session": {"fleet_allocator_time_to_session_seconds_bucket"},
    "webhook rate and rejections": {"fleet_webhook_callbacks_total", "fleet_webhook_rejections_total"},
    "platform calls, errors, 429s": {"fleet_platform_calls_total", "fleet_platform_backoff_seconds"},
    "RQ depth and failed jobs": {"fleet_rq_jobs"},
    "decision latency and reasons": {
        "fleet_scaler_pass_duration_seconds_bucket",
        "fleet_scaler_decisions_total",
    },
    "leader changes": {"fleet_scaler_leader_changes_total", "fleet_scaler_is_leader"},
}


def test_dashboards_show_what_the_issue_asks_for() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
    missing = {topic: sorted(m - used) for topic, m in REQUIRED_PANEL_METRICS.items() if m - used}
    assert not missing


def test_per_policy_panels_are_templated_by_fleet_and_policy() -> None:
    for where, expr in dashboard_exprs():
        if "fleet_scaler_current_deployments" in expr and "variable" not in where:
            assert 'fleet=~"$fleet"' in expr and 'policy=~"$policy"' in expr, where


# --- only exported metrics, only valid PromQL ------------------------------------------------------
def test_dashboards_and_rules_use_only_exported_metrics() -> None:
    exported = exported_names() | PROMETHEUS_OWN
    uses = dashboard_exprs() + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    unknown = {where: sorted(metric_names(expr) - exported) for where, expr in uses}
    assert not {w: u for w, u in unknown.items() if u}
    assert all(metric_names(expr) for _, expr in uses), "an expression without any metric"


def test_alert_rules_pass_promtool() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    """Each expression (variables at "All") wrapped as a recording rule, checked by promtool."""
    rules = [
        {"record": f"dashboard_check_{i}", "expr": substitute(expr, rate_s=60)}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses invalid PromQL."""
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "r", "expr": "sum(("}]}]}))
    assert run_promtool("check", "rules", str(path)).returncode != 0


# --- alert rules carry what the on-call needs ------------------------------------------------------
REQUIRED_ALERTS = {
    "FleetNoScalerLeader",
    "FleetPlacementsFailing",
    "FleetWebhookAuthFailures",
    "FleetPlatformErrorRate",
    "FleetPlatformBackoff",
    "FleetQueueBacklog",
    "FleetPolicyDegraded",
    "FleetPolicyAtMaximumOverThreshold",
    "FleetRedisUnreachable",
}


def test_alerts_cover_the_issue_and_carry_runbooks() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert len(notes["runbook"]) > 80, f"{rule['alert']}: the runbook says what to do"


# --- the PNG rendering used by the demo ------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "rate_s", "expected"),
    [
        pytest.param(
            'x{fleet=~"$fleet"}[$__rate_interval]', 4, 'x{fleet=~".*"}[4s]', id="all-and-rate-interval"
        ),
        pytest.param("increase(y[$__interval])", 10, "increase(y[10s])", id="interval"),
    ],
)
def test_substitute_grafana_variables(expr: str, rate_s: int, expected: str) -> None:
    assert substitute(expr, rate_s) == expected


def test_rate_interval_follows_grafana() -> None:
    # max(step + scrape, 4 * scrape): 1 s scrapes at a 2 s step -> max(3, 4) = 4 s; 15 s scrapes -> 60 s.
    assert rate_interval_s(2, 1) == 4
    assert rate_interval_s(30, 15) == 60
    assert rate_interval_s(100, 1) == 101


def test_render_draws_every_panel_from_range_queries(tmp_path: Path) -> None:
    class Source:
        def __init__(self) -> None:
            self.queries: list[str] = []

        def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
            self.queries.append(expr)
            if "broken" in expr:
                raise RuntimeError("bad_data: parse error")
            grid = [start + i * step_s for i in range(int((end - start) / step_s) + 1)]
            return [
                {"metric": {"result": r}, "values": [[t, str(i)] for i, t in enumerate(grid)]} for r in "ab"
            ]

    board = {
        "uid": "b",
        "title": "B",
        "panels": [
            {"type": "row", "title": "r", "panels": []},
            {
                "type": "timeseries",
                "title": "Stacked / rates",
                "fieldConfig": {"defaults": {"unit": "ops", "custom": {"stacking": {"mode": "normal"}}}},
                "targets": [
                    {"refId": "A", "expr": "rate(m[$__rate_interval])", "legendFormat": "{{result}}"}
                ],
            },
            {
                "type": "timeseries",
                "title": "Broken",
                "targets": [{"refId": "A", "expr": "broken", "legendFormat": ""}],
            },
        ],
    }
    source = Source()
    paths = render(source, tmp_path, 1000.4, 1100.2, scrape_s=1.0, dashboards=[board])
    assert [p.name for p in paths] == ["b-01-stacked-rates.png", "b-02-broken.png", "b-overview.png"]
    assert source.queries[0] == "rate(m[4s])"
    index = json.loads((tmp_path / "index.json").read_text())
    assert index[0]["series"] == 2 and "errors" not in index[0]
    assert index[1]["series"] == 0 and "parse error" in index[1]["errors"][0]
