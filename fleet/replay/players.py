"""Players: when each one arrives, from which region, for how long -- and the lower bound.

The trace says how many players are online; the replay needs individual players. Each region's
target is its share of the trace (`fleet.demand.split`, by local time of day), and players arrive
as a Poisson process whose rate keeps the expected number online on that target: rate = trend +
target / mean session length (Little's law; exact for exponential sessions, a lag of about one
session length on fast changes for the other models). The rate is constant over one-minute cells;
a falling target faster than sessions end gives no arrivals. Before the window, the target ramps
from 0 over the warm-up, so every policy starts with a fleet sized for the first instant instead of a
stampede; the warm-up is not measured.

Everything here is drawn from its own generator (seed), before and apart from any policy: every
policy, and the lower bound, see exactly the same players.

Gaps in the trace (steps longer than 15 minutes): `interpolate` draws the straight line between the
samples around the gap; `hold` keeps the last sample until the next one.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleet.demand import split
from fleet.replay.inputs import GAP_S, ReplayInputs, SessionModel

CELL_S = 60.0


@dataclass
class Players:
    """Every player of a replay, by arrival. `leave_at` / `leave_order`: departures, sorted, of
    players placed the moment they arrive (a player who waited leaves `length` after being placed)."""

    arrive: array  # type: ignore[type-arg]  # 'd', ascending
    region: array  # type: ignore[type-arg]  # 'b', index into inputs.regions
    length: array  # type: ignore[type-arg]  # 'd', seconds of play once placed
    leave_at: array  # type: ignore[type-arg]  # 'd', ascending
    leave_order: array  # type: ignore[type-arg]  # 'q', player index of each leave_at
    measured_from: float  # the window's start: players arriving before it are warm-up
    measured_to: float

    def __len__(self) -> int:
        return len(self.arrive)


def knots(inputs: ReplayInputs) -> tuple[np.ndarray, np.ndarray]:
    """Times and player targets, with the warm-up ramp and the gap rule applied."""
    times = np.asarray(inputs.trace.times, dtype=float)
    values = np.asarray(inputs.trace.players, dtype=float)
    if inputs.gaps == "hold":
        steps = np.diff(times)
        gaps = np.nonzero(steps > GAP_S)[0]
        # Hold the value until one second before the next sample.
        times = np.insert(times, gaps + 1, times[gaps + 1] - 1.0)
        values = np.insert(values, gaps + 1, values[gaps])
    if inputs.warmup_s > 0:
        times = np.concatenate(([times[0] - inputs.warmup_s], times))
        values = np.concatenate(([0.0], values))
    return times, values


def regional_targets(inputs: ReplayInputs, edges: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Players per region (columns) at each edge time (rows). `split` is linear in the players and
    depends on the time of day only, so it is evaluated once per distinct time of day."""
    regions = [r.region for r in inputs.regions]
    phases, inverse = np.unique(np.mod(edges, 86400.0), return_inverse=True)
    shares = np.empty((len(phases), len(regions)))
    for i, t in enumerate(phases.tolist()):
        one = split(1.0, t, regions)
        shares[i] = [one[r.name] for r in regions]
    return totals[:, None] * shares[inverse.ravel()]


def _packed(code: str, values: np.ndarray) -> array:  # type: ignore[type-arg]
    out = array(code)
    out.frombytes(values.tobytes())
    return out


def draw_lengths(model: SessionModel, rng: np.random.Generator, n: int) -> np.ndarray:
    if model.kind == "fixed":
        return np.full(n, model.mean_s)
    if model.kind == "lognormal":
        mu = math.log(model.mean_s) - model.sigma**2 / 2  # so that the mean is mean_s
        return rng.lognormal(mu, model.sigma, n)
    return rng.exponential(model.mean_s, n)


def generate(inputs: ReplayInputs) -> Players:
    times, values = knots(inputs)
    start, end = float(times[0]), inputs.end
    cells = max(1, math.ceil((end - start) / CELL_S))
    edges = np.minimum(start + CELL_S * np.arange(cells + 1), end)
    targets = regional_targets(inputs, edges, np.interp(edges, times, values))
    widths = np.diff(edges)[:, None]
    mean_s = inputs.sessions.mean_s
    rates = np.maximum(0.0, np.diff(targets, axis=0) / widths + (targets[:-1] + targets[1:]) / (2 * mean_s))
    rng = np.random.default_rng(inputs.seed)
    counts = rng.poisson(rates * widths)  # cells x regions
    flat = counts.ravel()  # row-major: cell by cell, region by region
    n = int(flat.sum())
    regions = len(inputs.regions)
    cell_of = np.repeat(np.repeat(np.arange(cells), regions), flat)
    region_of = np.repeat(np.tile(np.arange(regions), cells), flat)
    arrive = edges[cell_of] + rng.random(n) * widths[cell_of, 0]
    order = np.argsort(arrive, kind="stable")
    arrive = arrive[order]
    region = region_of[order].astype(np.int8)
    length = draw_lengths(inputs.sessions, rng, n)
    leave = arrive + length
    leave_order = np.argsort(leave, kind="stable")
    return Players(
        arrive=_packed("d", arrive.astype(np.float64)),
        region=_packed("b", region),
        length=_packed("d", length.astype(np.float64)),
        leave_at=_packed("d", leave[leave_order].astype(np.float64)),
        leave_order=_packed("q", leave_order.astype(np.int64)),
        measured_from=inputs.start,
        measured_to=inputs.end,
    )


# --- the lower bound ----------------------------------------------------------------------------------
def _online(arrive: np.ndarray, leave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step function of players online: event times and the count from each one on."""
    t = np.concatenate((arrive, leave))
    delta = np.concatenate((np.ones(len(arrive), dtype=np.int64), -np.ones(len(leave), dtype=np.int64)))
    order = np.argsort(t, kind="stable")
    return t[order], np.cumsum(delta[order])


def _integral(t: np.ndarray, level: np.ndarray, start: float, end: float) -> float:
    """The integral over [start, end] of a step function equal to level[k] on [t[k], t[k+1])."""
    if len(t) == 0:
        return 0.0
    nxt = np.append(t[1:], end)
    lo = np.clip(t, start, end)
    hi = np.clip(nxt, start, end)
    return float(np.sum(level * (hi - lo)))


def lower_bound(players: Players, inputs: ReplayInputs) -> dict[str, Any]:
    """Deployment-hours of ceil(players(t) / sockets) deployments at every instant of the window,
    players(t) being everyone online if each were placed the moment they arrived. No policy that
    serves every player can do with fewer: deployments are whole and hold `sockets` players."""
    arrive = np.frombuffer(players.arrive, dtype=float)
    leave = arrive + np.frombuffer(players.length, dtype=float)
    start, end = players.measured_from, players.measured_to
    t, online = _online(arrive, leave)
    need = np.ceil(online / inputs.sockets)
    regions: dict[str, Any] = {}
    region = np.frombuffer(players.region, dtype=np.int8)
    for i, r in enumerate(inputs.regions):
        mask = region == i
        tr, onr = _online(arrive[mask], leave[mask])
        regions[r.name] = {
            "deployment_hours": _integral(tr, np.ceil(onr / inputs.sockets), start, end) / 3600,
            "player_hours": _integral(tr, onr, start, end) / 3600,
        }
    inside = (t >= start) & (t <= end)
    measured = (arrive >= start) & (arrive <= end)
    return {
        "deployment_hours": _integral(t, need, start, end) / 3600,
        "player_hours": _integral(t, online, start, end) / 3600,
        "peak_players": int(online[inside].max()) if inside.any() else 0,
        "peak_deployments": int(need[inside].max()) if inside.any() else 0,
        "players": int(measured.sum()),
        "regions": regions,
    }


def online_at(players: Players, region: int, at: np.ndarray) -> np.ndarray:
    """Players of one region online at each time of `at`, all placed on arrival (for the plots)."""
    arrive = np.frombuffer(players.arrive, dtype=float)
    mask = np.frombuffer(players.region, dtype=np.int8) == region
    a = arrive[mask]
    leave = np.sort(a + np.frombuffer(players.length, dtype=float)[mask])
    return np.searchsorted(a, at, side="right") - np.searchsorted(leave, at, side="right")
