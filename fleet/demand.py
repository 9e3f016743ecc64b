"""Player demand: a built-in curve, `TIME,PLAYERS` traces, and the split of players across
regions by time zone. Pure functions shared by `fleet demo` and `fleet replay`."""

from __future__ import annotations

import csv
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOUR_S = 3600.0


@dataclass(frozen=True)
class Trace:
    """Player counts over time (seconds, ascending), linearly interpolated between samples."""

    times: tuple[float, ...]
    players: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times) < 2 or len(self.times) != len(self.players):
            raise ValueError("a trace needs at least two samples of TIME and PLAYERS")

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def at(self, t: float) -> float:
        if t <= self.times[0]:
            return self.players[0]
        if t >= self.times[-1]:
            return self.players[-1]
        i = bisect_right(self.times, t)
        t0, t1 = self.times[i - 1], self.times[i]
        p0, p1 = self.players[i - 1], self.players[i]
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0)

    def window(self, start: float, end: float) -> Trace:
        pts = [(t, p) for t, p in zip(self.times, self.players, strict=True) if start <= t <= end]
        if len(pts) < 2:
            raise ValueError("the window holds fewer than two samples")
        return Trace(tuple(t for t, _ in pts), tuple(p for _, p in pts))

    def peak_time(self) -> float:
        return self.times[max(range(len(self.players)), key=self.players.__getitem__)]

    def around_peak(self, hours: float) -> Trace:
        """The `hours` around the largest value (clamped to the trace)."""
        half = hours * HOUR_S / 2
        centre = min(max(self.peak_time(), self.start + half), self.end - half)
        return self.window(centre - half, centre + half)

    def last(self, hours: float) -> Trace:
        return self.window(self.end - hours * HOUR_S, self.end)

    def scaled(self, factor: float) -> Trace:
        return Trace(self.times, tuple(p * factor for p in self.players))


def load_trace(path: Path) -> Trace:
    """A `TIME,PLAYERS` CSV (Unix seconds, count); header required; rows sorted by time."""
    times: list[float] = []
    players: list[float] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {(name or "").strip().upper(): name for name in reader.fieldnames or []}
        if "TIME" not in fields or "PLAYERS" not in fields:
            raise ValueError(f"{path}: expected a header with TIME and PLAYERS columns")
        for row in reader:
            try:
                t, p = float(row[fields["TIME"]]), float(row[fields["PLAYERS"]])
            except (TypeError, ValueError):
                continue
            if not (math.isfinite(t) and math.isfinite(p)) or p < 0:
                continue
            if times and t <= times[-1]:
                continue
            times.append(t)
            players.append(p)
    return Trace(tuple(times), tuple(players))


def builtin_trace(hours: float = 48.0, step_s: float = 300.0) -> Trace:
    """Two days of a game's players: a daily cycle, a weekend lift and a launch-event spike."""
    times, players = [], []
    n = int(hours * HOUR_S / step_s) + 1
    for i in range(n):
        t = i * step_s
        day = math.sin(2 * math.pi * (t / HOUR_S - 9) / 24)  # lowest around 03:00, highest 15:00
        base = 200 + 140 * day
        spike = 380 * math.exp(-((((t / HOUR_S) - hours * 0.6) / 1.2) ** 2))
        times.append(t)
        players.append(max(10.0, base + spike))
    return Trace(tuple(times), tuple(players))


@dataclass(frozen=True)
class Region:
    """A group of players, described by the UTC offset of its evening peak."""

    name: str
    utc_offset_h: float


def diurnal_weight(hour_local: float) -> float:
    """Relative activity by local hour: low before dawn, high in the evening (never zero)."""
    return 1.0 + 0.8 * math.sin(2 * math.pi * (hour_local - 14) / 24)


def split(players: float, t_utc: float, regions: Sequence[Region]) -> dict[str, float]:
    """Players per region at Unix time t: shares follow each region's local time of day."""
    hour = (t_utc / HOUR_S) % 24
    weights = {r.name: diurnal_weight((hour + r.utc_offset_h) % 24) for r in regions}
    total = sum(weights.values())
    return {name: players * w / total for name, w in weights.items()}
