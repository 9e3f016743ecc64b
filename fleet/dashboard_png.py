"""Render every panel of the Grafana dashboards to PNG from Prometheus range queries (matplotlib),
so a user sees the dashboards' picture without Grafana (which cannot be installed here).

The dashboard JSON is the one Grafana loads (dashboards/grafana/*.json): the same expressions,
legends, units, stacking and dashed series, with the variables at "All" and Grafana's
`$__rate_interval` computed the way Grafana does (max(step + scrape interval, 4 x scrape interval)).
"""

from __future__ import annotations

import atexit
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fleet.procs import Stack
    from fleet.prometheus import PrivatePrometheus

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards" / "grafana"
MAX_POINTS = 300
RECORD_SCRAPE_S = 1.0
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SLUG = re.compile(r"[^a-z0-9]+")


class RangeSource(Protocol):
    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]: ...


@dataclass
class Series:
    name: str
    points: dict[float, float]


@dataclass
class PanelData:
    title: str
    unit: str
    stacked: bool
    dashed: str
    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load_dashboards(folder: Path = DASHBOARDS) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def graph_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries, rows flattened (collapsed rows keep theirs under `panels`)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from (p for p in panel.get("panels", []) if p.get("targets"))
        elif panel.get("targets"):
            yield panel


def rate_interval_s(step_s: float, scrape_s: float) -> int:
    return math.ceil(max(step_s + scrape_s, 4 * scrape_s))


def substitute(expr: str, rate_s: int, variables: dict[str, str] | None = None) -> str:
    """Grafana's variables: `$__rate_interval`, `$__interval`, and template variables ("All": `.*`)."""
    out = expr.replace("$__rate_interval", f"{rate_s}s").replace("$__interval", f"{rate_s}s")
    return re.sub(r"\$(\w+)", lambda m: (variables or {}).get(m.group(1), ".*"), out)


def legend(fmt: str, labels: dict[str, str]) -> str:
    text = _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()
    return text or json.dumps(labels, sort_keys=True)


def panel_data(
    panel: dict[str, Any], source: RangeSource, start: float, end: float, step_s: float, scrape_s: float
) -> PanelData:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    dashed = next(
        (o["matcher"]["options"] for o in panel.get("fieldConfig", {}).get("overrides", [])),
        "",
    )
    data = PanelData(panel["title"], defaults.get("unit", "short"), "stacking" in custom, dashed)
    rate_s = rate_interval_s(step_s, scrape_s)
    for target in panel["targets"]:
        expr = substitute(target["expr"], rate_s)
        try:
            result = source.query_range(expr, start, end, step_s)
        except Exception as err:  # one bad query must not cost the other pictures
            data.errors.append(f"{target.get('refId')}: {err}")
            continue
        for item in result:
            points = {float(t): float(v) for t, v in item["values"]}
            data.series.append(Series(legend(target.get("legendFormat", ""), item["metric"]), points))
    return data


def _scale(unit: str) -> tuple[float, str]:
    return {
        "percentunit": (100.0, "%"),
        "s": (1.0, "seconds"),
        "reqps": (1.0, "requests / s"),
        "ops": (1.0, "per second"),
    }.get(unit, (1.0, ""))


def draw(ax: Any, data: PanelData, start: float, step_s: float, end: float) -> None:
    factor, ylabel = _scale(data.unit)
    grid = [start + i * step_s for i in range(int((end - start) / step_s) + 1)]
    xs = [t - start for t in grid]
    finite = [s for s in data.series if any(math.isfinite(v) for v in s.points.values())]
    if data.stacked and finite:
        stacked = [[factor * _finite(s.points.get(t, 0.0)) for t in grid] for s in finite]
        ax.stackplot(xs, stacked, labels=[s.name for s in finite], alpha=0.8)
    else:
        for s in finite:
            ys = [factor * s.points[t] if t in s.points else math.nan for t in grid]
            dashed = bool(data.dashed and re.fullmatch(data.dashed, s.name))
            ax.plot(xs, ys, label=s.name, linestyle="--" if dashed else "-", linewidth=1.2)
    ax.set_xlim(0, end - start)  # every panel on the same time axis, empty ones included
    ax.set_title(data.title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if finite:
        ax.legend(fontsize=6, loc="upper left")
    else:
        note = "no data" + (f" ({data.errors[0][:80]})" if data.errors else "")
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="gray")


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")


def render(
    source: RangeSource,
    out: Path,
    start: float,
    end: float,
    *,
    scrape_s: float = 1.0,
    dashboards: Sequence[dict[str, Any]] | None = None,
) -> list[Path]:
    """One PNG per panel plus one overview per dashboard in `out`; an index.json of what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    # Whole seconds: Prometheus answers on the grid start + k * step, which `draw` rebuilds.
    start, end = float(math.floor(start)), float(math.ceil(end))
    step_s = float(max(math.ceil(scrape_s), math.ceil((end - start) / MAX_POINTS)))
    written: list[Path] = []
    index: list[dict[str, Any]] = []
    for board in dashboards if dashboards is not None else load_dashboards():
        panels = [panel_data(p, source, start, end, step_s, scrape_s) for p in graph_panels(board)]
        for i, data in enumerate(panels, start=1):
            fig, ax = plt.subplots(figsize=(8, 3.6))
            draw(ax, data, start, step_s, end)
            ax.set_xlabel("seconds since the start of the run", fontsize=8)
            fig.tight_layout()
            path = out / f"{board['uid']}-{i:02d}-{slug(data.title)}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
            index.append(
                {
                    "dashboard": board["uid"],
                    "panel": data.title,
                    "file": path.name,
                    "series": len(data.series),
                }
                | ({"errors": data.errors} if data.errors else {})
            )
        written.append(_overview(plt, board, panels, out, start, step_s, end))
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return written


def _overview(
    plt: Any,
    board: dict[str, Any],
    panels: list[PanelData],
    out: Path,
    start: float,
    step_s: float,
    end: float,
) -> Path:
    cols = 3
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 3.2), squeeze=False)
    for ax, data in zip(axes.flat, panels, strict=False):
        draw(ax, data, start, step_s, end)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"{board['title']} (rendered from Prometheus, all fleets and policies)", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (rows * 3.2)))  # leave the title its own band
    path = out / f"{board['uid']}-overview.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --- `fleet demo`: record the run with a private Prometheus, render at the end ----------------------
def start_recording(stack: Stack) -> PrivatePrometheus | None:
    """A Prometheus scraping every process of the demo's stack each second, or None (with a note)
    when the binary is missing. Stopped at exit whatever happens to the demo."""
    from fleet.prometheus import PrivatePrometheus, PrometheusError, prometheus_binary

    if prometheus_binary() is None:
        print("demo: prometheus not installed: no dashboard pictures (apt-get install prometheus)")
        return None
    try:
        prom = PrivatePrometheus(stack.metrics_targets(), scrape_interval_s=RECORD_SCRAPE_S).start()
    except PrometheusError as err:
        print(f"demo: prometheus did not start, no dashboard pictures: {err}")
        return None
    atexit.register(prom.cleanup)
    print(
        f"demo: prometheus at {prom.url} scraping {sum(map(len, stack.metrics_targets().values()))} targets"
    )
    return prom


def render_recording(prom: PrivatePrometheus | None, out: Path) -> list[Path]:
    """Render the dashboards over the whole recording into `out/dashboards/`, then stop Prometheus."""
    folder = out / "dashboards"
    if prom is None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "SKIPPED.txt").write_text("prometheus was not available: no dashboard pictures\n")
        return []
    try:
        paths = render(prom, folder, prom.started_at, time.time(), scrape_s=RECORD_SCRAPE_S)
    except Exception as err:  # pictures are a bonus: never fail the demo's own checks for them
        print(f"demo: dashboard rendering failed: {type(err).__name__}: {err}")
        return []
    finally:
        prom.cleanup()
    print(f"demo: {len(paths)} dashboard pictures in {folder}/")
    return paths
