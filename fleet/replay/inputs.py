"""What a replay runs on: the trace window, the fleet configuration, the app version's facts, the
player model and the regions players come from. Plain values; `fleet.replay_cli` builds them from
flags, tests build them directly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleet.demand import HOUR_S, Region, Trace

DAY_S = 24 * HOUR_S
GAP_S = 15 * 60.0  # a trace step longer than this is a gap (the collector was down)


@dataclass(frozen=True)
class PlayerRegion:
    """Where a region's players are: their time zone (for the split), a point (for placement) and
    an origin (for choosing the policy that adds capacity for them, as `autoscaler.demand` does)."""

    name: str
    utc_offset_h: float
    latitude: float
    longitude: float
    continent: str
    country: str

    @property
    def region(self) -> Region:
        return Region(self.name, self.utc_offset_h)

    @property
    def origin(self) -> dict[str, Any]:
        return {
            "latitude": self.latitude,
            "longitude": self.longitude,
            "continent": self.continent,
            "country": self.country,
        }


# Regions a replay can split players into, each at a big city of its continent.
REGIONS: dict[str, PlayerRegion] = {
    r.name: r
    for r in (
        PlayerRegion("europe", 1.0, 50.11, 8.68, "Europe", "DE"),
        PlayerRegion("north-america", -6.0, 41.88, -87.63, "North America", "US"),
        PlayerRegion("south-america", -3.0, -23.55, -46.63, "South America", "BR"),
        PlayerRegion("asia", 8.0, 1.35, 103.82, "Asia", "SG"),
        PlayerRegion("oceania", 10.0, -33.87, 151.21, "Oceania", "AU"),
    )
}
DEFAULT_REGIONS = ("europe", "north-america", "asia")

APP, VERSION, FLEET = "game", "v1", "replay"


def parse_regions(text: str) -> tuple[PlayerRegion, ...]:
    """`europe,north-america` or with UTC offsets `europe:1,north-america:-5`."""
    out: list[PlayerRegion] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, offset = part.partition(":")
        base = REGIONS.get(name)
        if base is None:
            raise ValueError(f"--regions: unknown region {name!r}; known: {', '.join(REGIONS)}")
        if offset:
            try:
                hours = float(offset)
            except ValueError:
                raise ValueError(f"--regions: {part!r}: the UTC offset must be a number of hours") from None
            if not -12 <= hours <= 14:
                raise ValueError(f"--regions: {part!r}: the UTC offset must be within -12..14")
            base = PlayerRegion(name, hours, base.latitude, base.longitude, base.continent, base.country)
        if any(r.name == name for r in out):
            raise ValueError(f"--regions: {name!r} appears twice")
        out.append(base)
    if not out:
        raise ValueError("--regions: name at least one region")
    return tuple(out)


# The seed's default policy threshold. Our scaler and the platform's own fleet behaviour both run the
# same configuration, so they scale up at the same utilisation: the comparison is of what each does
# around that line, not of two different lines.
DEFAULT_THRESHOLD = 0.9


def default_config(regions: tuple[PlayerRegion, ...], maximum: int = 1000) -> dict[str, Any]:
    """One fleet with one Location policy per region (continent filter), in `fleet apply` format."""
    return {
        "fleets": [
            {
                "name": FLEET,
                "enabled": True,
                "apps": [{"app": APP, "version": VERSION}],
                "policies": [
                    {
                        "name": r.name,
                        "enabled": True,
                        "type": "Location",
                        "minimum": 1,
                        "maximum": maximum,
                        "threshold": DEFAULT_THRESHOLD,
                        "data": {
                            "filters": [{"field": "continent", "values": [r.continent], "filter_type": "any"}]
                        },
                    }
                    for r in regions
                ],
            }
        ]
    }


def load_config_text(path: Path | None, regions: tuple[PlayerRegion, ...]) -> Any:
    """The YAML document of `path`, or the default configuration."""
    if path is None:
        return default_config(regions)
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path}: {err}") from err


@dataclass(frozen=True)
class SessionModel:
    """Session lengths: `exponential` (mean), `fixed` (exactly mean) or `lognormal` (mean, sigma)."""

    kind: str = "exponential"
    mean_s: float = 20 * 60.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("exponential", "fixed", "lognormal"):
            raise ValueError("session model: expected exponential, fixed or lognormal")
        if not (math.isfinite(self.mean_s) and self.mean_s > 0):
            raise ValueError("session model: the mean must be a positive number of seconds")


@dataclass(frozen=True)
class ReplayInputs:
    """Everything a replay depends on. The reference setting is the default: Seat sessions of one
    player, 10 sockets per deployment, 30 s boot, exponential sessions of mean 20 min, seed 1."""

    trace: Trace  # already windowed and scaled
    config: Any  # the fleet configuration document (`fleet apply` format)
    regions: tuple[PlayerRegion, ...] = tuple(REGIONS[n] for n in DEFAULT_REGIONS)
    sockets: int = 10
    boot_s: float = 30.0
    stop_s: float = 1.0
    sessions: SessionModel = field(default_factory=SessionModel)
    seed: int = 1
    max_wait_s: float = 120.0  # a player still waiting this long after asking is refused
    warmup_s: float = HOUR_S  # players ramp in from 0 before the window; not measured
    gaps: str = "interpolate"  # or "hold": a gap keeps the last value until the next sample
    empty_ttl_min: int = 5  # the app version's empty_ttl, used by the platform's own behaviour
    agones_buffer: str = "20%"  # sockets kept free: a percentage of the total, or an absolute count
    agones_sync_s: float = 30.0
    account_max_deployments: int = 1000
    account_max_creates_per_minute: int = 120
    default_idle_s: float = 300.0
    deploy_timeout_s: float = 300.0
    sample_s: float | None = None  # plot resolution; None: about 2,000 points over the window

    def __post_init__(self) -> None:
        if self.sockets < 1:
            raise ValueError("sockets: expected an integer >= 1")
        if not (self.boot_s >= 0 and math.isfinite(self.boot_s)):
            raise ValueError("boot: expected a number of seconds >= 0")
        if self.max_wait_s <= 0:
            raise ValueError("max wait: expected a positive number of seconds")
        if self.gaps not in ("interpolate", "hold"):
            raise ValueError("gaps: expected interpolate or hold")
        if self.agones_sync_s <= 0:
            raise ValueError("agones sync: expected a positive number of seconds")
        if not self.warmup_s >= 0:
            raise ValueError("warm-up: expected a number of seconds >= 0")
        if self.empty_ttl_min < 1:
            raise ValueError("empty ttl: expected a whole number of minutes >= 1")
        parse_buffer(self.agones_buffer)

    @property
    def start(self) -> float:
        return self.trace.start

    @property
    def end(self) -> float:
        return self.trace.end

    @property
    def sample_every_s(self) -> float:
        if self.sample_s:
            return self.sample_s
        return max(30.0, (self.end - self.start) / 2000)


def parse_buffer(text: str) -> tuple[float, bool]:
    """`20%` -> (0.2, True); `50` -> (50, False)."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value = float(raw[:-1]) / 100
            if not 0 <= value < 1:
                raise ValueError
            return value, True
        count = float(raw)
        if count < 0 or count != int(count):
            raise ValueError
        return count, False
    except ValueError:
        raise ValueError(
            f"agones buffer: expected a percentage below 100% or a socket count, got {text!r}"
        ) from None


def select_window(trace: Trace, spec: str) -> Trace:
    """`all`, `last:28d`, `first:12h`, `peak:48h`, or `START:END` in Unix seconds."""
    spec = spec.strip()
    if spec == "all":
        return trace
    kind, _, amount = spec.partition(":")
    if kind in ("last", "first", "peak"):
        seconds = _duration_s(amount)
        if kind == "last":
            return trace.window(trace.end - seconds, trace.end)
        if kind == "first":
            return trace.window(trace.start, trace.start + seconds)
        return trace.around_peak(seconds / HOUR_S)
    try:
        start, end = float(kind), float(amount)
    except ValueError:
        raise ValueError(
            f"--window: expected all, last:28d, first:12h, peak:48h or START:END, got {spec!r}"
        ) from None
    return trace.window(start, end)


def _duration_s(text: str) -> float:
    units = {"s": 1.0, "m": 60.0, "h": HOUR_S, "d": DAY_S, "w": 7 * DAY_S}
    try:
        # A bare number is hours.
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text) * HOUR_S
    except ValueError:
        raise ValueError(f"--window: bad duration {text!r} (e.g. 28d, 12h, 90m)") from None
    if value <= 0:
        raise ValueError(f"--window: the duration must be positive, got {text!r}")
    return value
