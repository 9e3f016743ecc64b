"""Helpers for the dashboard and alert tests: metric names in PromQL, exported names, promtool."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase

from fleet import metrics
from fleet.observability import process_collectors
from fleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
ALERTS = DASHBOARDS / "alerts.yml"
# Series Prometheus itself writes for every target: rules may use them.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords, label names
    (inside `{}` or grouping clauses), strings, durations or Grafana variables."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = _MODIFIER.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables outside strings
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def variable_selector(query: str) -> str:
    """The series selector of a Grafana `label_values(selector, label)` variable query."""
    found = _LABEL_VALUES.match(query)
    return found.group(1) if found else query


def _sample_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind in ("histogram", "summary"):
        suffixes = ("_bucket", "_sum", "_count", "_created") if kind == "histogram" else ("_sum", "_count")
        return {name + s for s in suffixes} | ({name} if kind == "summary" else set())
    return {name}


def exported_names() -> set[str]:
    """Every series name the service can export: the catalogue plus the scrape-time collectors."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            assert isinstance(value, Counter | Gauge | Histogram | Summary)
            for family in value.describe():
                names |= _sample_names(family.name, family.type)
    for collector in process_collectors(Settings(), "scaler"):  # the scaler has every collector
        for family in collector.describe():
            names |= _sample_names(family.name, family.type)
    return names


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.fail("promtool is not installed: `make deps` installs Debian's prometheus package")
    return found


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True, timeout=60)


def load_build() -> ModuleType:
    """dashboards/build.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]
