"""The metric catalogue follows Prometheus conventions, has bounded labels and is documented in the
README's metrics section (the table SREs read)."""

from __future__ import annotations

import re

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from fleet import metrics
from fleet.observability import process_collectors
from fleet.settings import Settings
from tests.unit.dashboards_promql import ROOT

BOUNDED_LABELS = {
    "fleet",
    "policy",
    "endpoint",
    "kind",
    "result",
    "reason",
    "state",
    "path",
    "outcome",
    "queue",
}
UNITS = ("_seconds", "_bytes", "_ratio")


def families() -> list[tuple[str, str, list[str], str]]:
    """(exposed name, type, label names, help) of every metric of the catalogue and collectors."""
    out = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            name = family.name + ("_total" if family.type == "counter" else "")
            out.append((name, family.type, list(value._labelnames), family.documentation))
    collectors: list[Collector] = process_collectors(Settings(), "scaler")
    for collector in collectors:
        for family in collector.describe():
            labels = list(getattr(family, "_labelnames", ()))  # GaugeMetricFamily keeps them here
            out.append((family.name, family.type, labels, family.documentation))
    return out


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- section: metrics -->(.*?)<!-- section: ", text, re.S)
    assert found, "README.md has no metrics section"
    return found.group(1)


@pytest.mark.parametrize(("name", "kind", "labels", "doc"), families(), ids=[f[0] for f in families()])
def test_metric_follows_conventions(name: str, kind: str, labels: list[str], doc: str) -> None:
    assert name.startswith("fleet_") and re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert doc.strip()
    if kind == "counter":
        assert name.endswith("_total")
    else:
        assert not name.endswith("_total")
    if kind == "histogram":
        assert name.endswith(UNITS), "a histogram names its unit"
    assert set(labels) <= BOUNDED_LABELS, f"unbounded label in {labels}"


def test_readme_catalogue_lists_every_metric() -> None:
    section = readme_section()
    missing = [name for name, *_ in families() if f"`{name}`" not in section]
    assert not missing, f"add to the README's metric catalogue: {missing}"
