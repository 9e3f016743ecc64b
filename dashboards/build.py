"""Build the Grafana dashboard JSON from this one source: `python dashboards/build.py`.

The generated files (`dashboards/grafana/*.json`) are committed; a test rebuilds them and fails
when they differ, when a panel uses a metric the service does not export, or when an expression is
not valid PromQL. Every panel uses the provisioned datasource uid `fleet-prometheus`.

Queries follow three rules:
- the scaler's per-policy gauges are read from the leader only (`and on (job, instance)
  fleet_scaler_is_leader == 1`): a standby keeps the last values it exported when it led;
- values every process family reads from Redis (waiting sessions, the RQ queue) are the same seen
  from several instances, so they are combined with `max`, never `sum`;
- counters are `rate`d over Grafana's `$__rate_interval` and summed over instances.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "fleet-prometheus"}
POLICY = 'fleet=~"$fleet", policy=~"$policy"'
RATE = "$__rate_interval"
LEADER = "and on (job, instance) (fleet_scaler_is_leader == 1)"


def _series(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric


def rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_series(metric, selector)}[{RATE}]))"


def quantile(q: float, histogram: str, by: str = "", selector: str = "") -> str:
    keep = f"le, {by}" if by else "le"
    buckets = _series(f"{histogram}_bucket", selector)
    return f"histogram_quantile({q}, sum by ({keep}) (rate({buckets}[{RATE}])))"


def policy_gauge(metric: str) -> str:
    """A scaler gauge per fleet/policy, from the current leader only."""
    return f"max by (fleet, policy) ({metric}{{{POLICY}}} {LEADER})"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat
    width: int = 12
    height: int = 8
    stack: bool = False
    dashed: str = ""  # regex of series names drawn dashed (a limit the others are compared with)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def t(expr: str, legend: str) -> Target:
    return Target(expr, legend)


ROWS = (
    Row(
        "Autoscaling (per fleet and policy)",
        (
            Panel(
                "Deployments: current, desired, pending",
                "The scaler's decision inputs and output per policy: live deployments (serving, starting, "
                "stopping), the capacity deployments it wants, and those still starting.",
                (
                    t(policy_gauge("fleet_scaler_current_deployments"), "current {{fleet}}/{{policy}}"),
                    t(policy_gauge("fleet_scaler_desired_deployments"), "desired {{fleet}}/{{policy}}"),
                    t(policy_gauge("fleet_scaler_pending_deployments"), "pending {{fleet}}/{{policy}}"),
                ),
            ),
            Panel(
                "Socket utilisation against threshold",
                "(used + reserved + waiting sockets) / capacity per policy; the dashed line is the "
                "policy's threshold. Above it the scaler adds deployments (within maximum).",
                (
                    t(policy_gauge("fleet_scaler_utilisation_ratio"), "utilisation {{fleet}}/{{policy}}"),
                    t(policy_gauge("fleet_scaler_threshold_ratio"), "threshold {{fleet}}/{{policy}}"),
                ),
                unit="percentunit",
                dashed="threshold.*",
            ),
            Panel(
                "Decisions by reason",
                "Recorded policy decisions per second by reason (a decision is recorded when it acts or "
                "changes): minimum, threshold, idle, cooldown, data_unknown, ...",
                (
                    t(
                        rate("fleet_scaler_decisions_total", "fleet, policy, reason", POLICY),
                        "{{reason}} {{fleet}}/{{policy}}",
                    ),
                ),
                unit="ops",
                stack=True,
            ),
            Panel(
                "Limited and degraded policies",
                "1 while a policy's scale-up is cut short (maximum, back-off, account caps) or while it "
                "backs off after deployments ended in ERROR.",
                (
                    t(policy_gauge("fleet_scaler_limited"), "limited {{fleet}}/{{policy}}"),
                    t(policy_gauge("fleet_scaler_degraded"), "degraded {{fleet}}/{{policy}}"),
                ),
                unit="none",
            ),
            Panel(
                "Decision latency",
                "One scaler pass (read state, decide, act) and the time from an event on the stream to "
                "the end of the pass that handled it, p50 and p99.",
                (
                    t(quantile(0.5, "fleet_scaler_pass_duration_seconds"), "pass p50"),
                    t(quantile(0.99, "fleet_scaler_pass_duration_seconds"), "pass p99"),
                    t(quantile(0.5, "fleet_scaler_event_to_decision_seconds"), "event to decision p50"),
                    t(quantile(0.99, "fleet_scaler_event_to_decision_seconds"), "event to decision p99"),
                ),
                unit="s",
            ),
            Panel(
                "Scaler actions",
                "Creates and stops per second by result (enqueued by the scaler; created, stopped or "
                "failed in the workers; kept when a placement won the race).",
                (t(rate("fleet_scaler_actions_total", "kind, result"), "{{kind}} {{result}}"),),
                unit="ops",
                stack=True,
            ),
        ),
    ),
    Row(
        "Placement (all fleets)",
        (
            Panel(
                "Placements by result",
                "Session requests per second: linked at once, waiting for capacity, refused (503), "
                "unprocessable, error (platform down).",
                (t(rate("fleet_allocator_placements_total", "result"), "{{result}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Time to session",
                "From session request to a linked session, p50 and p99, for requests placed at once "
                "and for those that waited for capacity.",
                (
                    t(quantile(0.5, "fleet_allocator_time_to_session_seconds", "path"), "p50 {{path}}"),
                    t(quantile(0.99, "fleet_allocator_time_to_session_seconds", "path"), "p99 {{path}}"),
                ),
                unit="s",
            ),
            Panel(
                "Placement decision latency",
                "Decide and reserve, without the platform call, p50 and p99.",
                (
                    t(quantile(0.5, "fleet_allocator_decision_seconds"), "p50"),
                    t(quantile(0.99, "fleet_allocator_decision_seconds"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "Waiting sessions and reservation refusals",
                "Sessions waiting for capacity (the same set seen by every web instance: max), and "
                "reservations refused by the atomic check per second.",
                (
                    t("max(fleet_allocator_waiting_sessions)", "waiting sessions"),
                    t(rate("fleet_allocator_reserve_refusals_total", "reason"), "refused {{reason}} /s"),
                ),
            ),
            Panel(
                "What ranked the candidates",
                "Placement reasons per second: telemetry, geographic estimate, ...",
                (t(rate("fleet_allocator_rank_reason_total", "reason"), "{{reason}}"),),
                unit="ops",
                stack=True,
            ),
            Panel(
                "Telemetry and geo caches",
                "Lookups per second by result (hit, partial, stale, miss) and background measurements.",
                (
                    t(rate("fleet_allocator_telemetry_cache_total", "result"), "telemetry {{result}}"),
                    t(rate("fleet_allocator_geo_cache_total", "result"), "geo {{result}}"),
                    t(rate("fleet_allocator_telemetry_requests_total", "result"), "measure {{result}}"),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "Platform callbacks (webhooks)",
        (
            Panel(
                "Webhook rate",
                "Platform callbacks per second by kind and result (transition, update, duplicate, ...).",
                (t(rate("fleet_webhook_callbacks_total", "kind, result"), "{{kind}} {{result}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Webhook rejections",
                "Refused callbacks per second by reason: missing_secret / bad_secret / throttled mean "
                "authentication failures (check FLEET_WEBHOOK_SECRET and the URL handed to the platform).",
                (t(rate("fleet_webhook_rejections_total", "kind, reason"), "{{kind}} {{reason}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Webhook handling latency",
                "From request to answer, p99 by kind.",
                (t(quantile(0.99, "fleet_webhook_handling_duration_seconds", "kind"), "p99 {{kind}}"),),
                unit="s",
            ),
            Panel(
                "Deployment transitions",
                "State transitions caused by callbacks per second, and usage anomalies (unknown or "
                "clamped sockets_usage).",
                (
                    t(rate("fleet_webhook_transitions_total", "kind, state"), "{{kind}} {{state}}"),
                    t(rate("fleet_webhook_usage_anomalies_total", "reason"), "usage {{reason}}"),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "Platform API (Codema)",
        (
            Panel(
                "Platform calls",
                "Codema API calls per second by result, all processes.",
                (t(rate("fleet_platform_calls_total", "result"), "{{result}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Platform errors and 429s",
                "Calls that did not succeed per second, by endpoint and result (rate_limited = 429 or "
                "the shared back-off), and retries.",
                (
                    t(
                        rate("fleet_platform_calls_total", "endpoint, result", 'result!="ok"'),
                        "{{endpoint}} {{result}}",
                    ),
                    t(rate("fleet_platform_retries_total", "reason"), "retry {{reason}}"),
                ),
                unit="reqps",
            ),
            Panel(
                "Platform call latency",
                "One attempt, p50 and p99 by endpoint.",
                (
                    t(quantile(0.5, "fleet_platform_call_duration_seconds", "endpoint"), "p50 {{endpoint}}"),
                    t(quantile(0.99, "fleet_platform_call_duration_seconds", "endpoint"), "p99 {{endpoint}}"),
                ),
                unit="s",
            ),
            Panel(
                "429 back-off and circuit breakers",
                "Seconds left of the shared 429 back-off, endpoints whose circuit is open, and time "
                "calls waited before sending (p99).",
                (
                    t("max(fleet_platform_backoff_seconds)", "back-off left (s)"),
                    t("max by (endpoint) (fleet_platform_circuit_open)", "circuit open {{endpoint}}"),
                    t(
                        quantile(0.99, "fleet_platform_admission_wait_seconds", "reason"),
                        "admission wait p99 {{reason}}",
                    ),
                ),
                unit="s",
            ),
        ),
    ),
    Row(
        "Jobs, Redis and leadership",
        (
            Panel(
                "RQ queue depth",
                "Platform jobs by state, read from Redis by the scalers (the same queue: max).",
                (
                    t(
                        'max by (state) (fleet_rq_jobs{state=~"queued|started|scheduled|deferred"})',
                        "{{state}}",
                    ),
                    t("max(fleet_rq_oldest_queued_job_age_seconds)", "oldest queued job age (s)"),
                ),
            ),
            Panel(
                "RQ failed jobs and workers",
                "Jobs in the failed registry (kept 24 h) and workers listening on the queue.",
                (
                    t('max by (queue) (fleet_rq_jobs{state="failed"})', "failed {{queue}}"),
                    t("max by (queue) (fleet_rq_workers)", "workers {{queue}}"),
                ),
            ),
            Panel(
                "Redis reachable",
                "1 while each process reached Redis at its last scrape, and the probe's round trip.",
                (
                    t("min by (job, instance) (fleet_redis_up)", "up {{job}} {{instance}}"),
                    t("max by (job) (fleet_redis_ping_duration_seconds)", "ping {{job}} (s)"),
                ),
            ),
            Panel(
                "Scaler leader and leader changes",
                "Scalers holding the lease (must be exactly 1) and leader changes in the interval.",
                (
                    t("sum(fleet_scaler_is_leader)", "leaders"),
                    t(f"sum(increase(fleet_scaler_leader_changes_total[{RATE}]))", "leader changes"),
                ),
            ),
            Panel(
                "Reconciles",
                "Reconciles against the platform's list per second by result.",
                (t(rate("fleet_scaler_reconciles_total", "result"), "{{result}}"),),
                unit="ops",
            ),
            Panel(
                "Client session webhooks, waits and sessions gone",
                "Webhooks sent to the game's backend by result, waits for capacity by outcome, and "
                "linked sessions ended because the platform no longer had them (the scaler's audit).",
                (
                    t(rate("fleet_allocator_session_webhooks_total", "result"), "webhook {{result}}"),
                    t(rate("fleet_allocator_waits_total", "outcome"), "wait {{outcome}}"),
                    t(rate("fleet_allocator_sessions_gone_total"), "gone on the platform"),
                ),
                unit="ops",
            ),
        ),
    ),
)


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "options": [],
        "regex": "",
    }


def panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10 if panel.stack else 0, "showPoints": "never"}
    if panel.stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    body: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": tg.expr, "legendFormat": tg.legend}
            for i, tg in enumerate(panel.targets)
        ],
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if panel.dashed:
        body["fieldConfig"]["overrides"].append(
            {
                "matcher": {"id": "byRegexp", "options": panel.dashed},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
            }
        )
    return body


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x = pid + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + panel.height
            panels.append(panel_json(panel, pid, x, y))
            pid, x = pid + 1, x + panel.width
        y += max(p.height for p in row.panels)
    return {
        "uid": "codema-fleet",
        "title": "codema-fleet",
        "description": "codema-fleet: autoscaling, placement, platform callbacks and calls, jobs, Redis.",
        "tags": ["codema-fleet"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                variable("fleet", "Fleet", "label_values(fleet_scaler_current_deployments, fleet)"),
                variable(
                    "policy",
                    "Policy",
                    'label_values(fleet_scaler_current_deployments{fleet=~"$fleet"}, policy)',
                ),
            ]
        },
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {"codema-fleet.json": json.dumps(dashboard(), indent=2) + "\n"}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
