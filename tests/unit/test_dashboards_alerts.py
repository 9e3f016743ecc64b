"""The alert rules' behaviour, evaluated by `promtool test rules` on synthetic series: each row is
a situation, the time at which it is judged, and the alerts expected to fire (label sets).

Annotations are stripped from the rules under test (promtool compares them verbatim); their
templates are checked by `promtool check rules` in test_dashboards.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.unit.dashboards_promql import ALERTS, run_promtool

LEADER = 'job="fleet-scaler", instance="s1"'
STANDBY = 'job="fleet-scaler", instance="s2"'
EU = 'fleet="f", policy="eu"'


@dataclass(frozen=True)
class Case:
    alert: str
    series: dict[str, str]  # series selector -> promtool values notation (15 s apart)
    at: str
    fires: list[dict[str, str]] = field(default_factory=list)  # label sets, severity excluded


def policy_state(
    instance: str, *, leader: int, limited: int, util: float, degraded: int = 0
) -> dict[str, str]:
    where = f'job="fleet-scaler", instance="{instance}"'
    return {
        f"fleet_scaler_is_leader{{{where}}}": f"{leader}x40",
        f"fleet_scaler_limited{{{where}, {EU}}}": f"{limited}x40",
        f"fleet_scaler_utilisation_ratio{{{where}, {EU}}}": f"{util}x40",
        f"fleet_scaler_threshold_ratio{{{where}, {EU}}}": "0.8x40",
        f"fleet_scaler_degraded{{{where}, {EU}}}": f"{degraded}x40",
    }


CASES = {
    "no leader for a minute": Case(
        "FleetNoScalerLeader", {f"fleet_scaler_is_leader{{{LEADER}}}": "0x10"}, "2m", [{}]
    ),
    "a leader": Case("FleetNoScalerLeader", {f"fleet_scaler_is_leader{{{LEADER}}}": "1x10"}, "2m"),
    "no scaler at all": Case(
        "FleetNoScalerLeader", {'fleet_redis_up{job="fleet-web", instance="w"}': "1x10"}, "2m", [{}]
    ),
    "two leaders": Case(
        "FleetSeveralScalerLeaders",
        {f"fleet_scaler_is_leader{{{LEADER}}}": "1x20", f"fleet_scaler_is_leader{{{STANDBY}}}": "1x20"},
        "3m",
        [{}],
    ),
    "redis down for a minute": Case(
        "FleetRedisUnreachable",
        {'fleet_redis_up{job="fleet-web", instance="w"}': "1 0x10"},
        "2m",
        [{"job": "fleet-web", "instance": "w"}],
    ),
    "redis blip of 30 s": Case(
        "FleetRedisUnreachable", {'fleet_redis_up{job="fleet-web", instance="w"}': "1 0 0 1x10"}, "2m"
    ),
    "at maximum over threshold": Case(
        "FleetPolicyAtMaximumOverThreshold",
        policy_state("s1", leader=1, limited=1, util=0.95),
        "6m",
        [{"fleet": "f", "policy": "eu"}],
    ),
    "limited but under threshold": Case(
        "FleetPolicyAtMaximumOverThreshold", policy_state("s1", leader=1, limited=1, util=0.5), "6m"
    ),
    "over threshold while degraded is the other alert": Case(
        "FleetPolicyAtMaximumOverThreshold",
        policy_state("s1", leader=1, limited=1, util=0.95, degraded=1),
        "6m",
    ),
    "degraded": Case(
        "FleetPolicyDegraded",
        policy_state("s1", leader=1, limited=0, util=0.5, degraded=1),
        "6m",
        [{"fleet": "f", "policy": "eu"}],
    ),
    "a standby's stale gauges are ignored": Case(
        "FleetPolicyAtMaximumOverThreshold",
        policy_state("s1", leader=1, limited=0, util=0.5)
        | policy_state("s2", leader=0, limited=1, util=0.95),
        "6m",
    ),
    "webhook secret wrong": Case(
        "FleetWebhookAuthFailures",
        {'fleet_webhook_rejections_total{kind="deployment", reason="bad_secret"}': "0+1x40"},
        "5m",
        [{"kind": "deployment"}],
    ),
    "oversized webhooks are not auth failures": Case(
        "FleetWebhookAuthFailures",
        {'fleet_webhook_rejections_total{kind="deployment", reason="too_large"}': "0+1x40"},
        "5m",
    ),
    "half the placements fail": Case(
        "FleetPlacementsFailing",
        {
            'fleet_allocator_placements_total{result="linked"}': "0+1x40",
            'fleet_allocator_placements_total{result="error"}': "0+1x40",
        },
        "6m",
        [{}],
    ),
    "placements wait but succeed": Case(
        "FleetPlacementsFailing",
        {
            'fleet_allocator_placements_total{result="linked"}': "0+1x40",
            'fleet_allocator_placements_total{result="waiting"}': "0+1x40",
        },
        "6m",
    ),
    "platform errors at 9 %": Case(
        "FleetPlatformErrorRate",
        {
            'fleet_platform_calls_total{endpoint="status", result="ok"}': "0+10x40",
            'fleet_platform_calls_total{endpoint="status", result="server_error"}': "0+1x40",
        },
        "6m",
        [{}],
    ),
    "429 back-off in force": Case(
        "FleetPlatformBackoff",
        {
            "fleet_platform_backoff_seconds": "5x20",
            'fleet_platform_calls_total{endpoint="deploy", result="rate_limited"}': "0+1x20",
        },
        "3m",
        [{}],
    ),
    "a stale back-off gauge without 429s": Case(
        "FleetPlatformBackoff",
        {
            "fleet_platform_backoff_seconds": "5x40",
            'fleet_platform_calls_total{endpoint="deploy", result="rate_limited"}': "3x40",
        },
        "8m",
    ),
    "the oldest job waits": Case(
        "FleetQueueBacklog",
        {'fleet_rq_oldest_queued_job_age_seconds{queue="q"}': "0+15x20"},
        "4m",
        [{"queue": "q"}],
    ),
    "jobs keep flowing": Case(
        "FleetQueueBacklog", {'fleet_rq_oldest_queued_job_age_seconds{queue="q"}': "2x20"}, "4m"
    ),
    "no worker": Case("FleetNoWorkers", {'fleet_rq_workers{queue="q"}': "0x20"}, "3m", [{"queue": "q"}]),
    "a job failed": Case(
        "FleetJobsFailing", {'fleet_rq_jobs{queue="q", state="failed"}': "0 0 0 1x20"}, "3m", [{"queue": "q"}]
    ),
}


def rules_without_annotations(tmp_path: Path) -> Path:
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def severity(alert: str) -> str:
    doc = yaml.safe_load(ALERTS.read_text())
    return next(
        str(r["labels"]["severity"]) for g in doc["groups"] for r in g["rules"] if r["alert"] == alert
    )


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_alert_rule(case: Case, tmp_path: Path) -> None:
    expected = [{"exp_labels": labels | {"severity": severity(case.alert)}} for labels in case.fires]
    spec = {
        "rule_files": [str(rules_without_annotations(tmp_path))],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(spec))
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
