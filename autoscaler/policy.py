"""The pure core of the autoscaler: how many deployments one policy should have, and which to stop.

No I/O, no clock, no randomness: the loop reads the world, calls `decide`, applies the difference
and records the reason. The pipeline follows the HPA's shape (propose, limit, stabilise), each
step naming its reason:

1. classify each live deployment: serving (READY), pending (still starting, or a create in
   flight), stopping (draining or asked to stop), stuck (starting past the deploy timeout),
   unknown (a status string we do not know);
2. propose: enough capacity deployments to bring utilisation under the threshold, never fewer
   than `minimum`;
3. limit: never more live deployments than `maximum` (stopping and stuck ones count until the
   platform confirms them gone), nothing while the policy backs off after errors;
4. stabilise: scale in only idle, empty, known-safe deployments, outside the cooldown, while what
   remains stays under the threshold minus the hysteresis margin -- for the *peak* demand of the
   stabilisation window (the idle time), as the HPA scales down on the highest recommendation of
   its window: demand oscillating around the threshold makes one up-step and no stop follows
   until the load really falls.

What stability costs (measured with `fleet replay`, README "What-if replay"): the margin and the
window keep capacity that a policy without them (the platform's empty-TTL fleets, an Agones buffer)
gives away and buys back minutes later. The window and the idle time run side by side, not one
after the other: a deployment stops at the later of (emptied + idle time) and (demand last at the
level that needs it + window). The default margin is 0.05 (it was 0.1, which held about 2% more
deployment-hours on the real trace; at 0.05 a stop is still bought back within 5 minutes only a few
times a day, where the baselines do it hundreds of times an hour).

Threshold arithmetic is exact (`fractions.Fraction` of the decimal the user wrote): 4 of 5
sockets at 0.8 is at the threshold, 3.99 of 5 is not, and 55 of 100 at 0.55 is (in floats
0.55 * 100 = 55.00000000000001 and the rule would silently fail).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from fleet.models import Status

Number = int | float | Fraction

# ERROR back-off: the first error waits this long, each further one doubles it, up to the cap.
BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 300.0


class Reason(enum.StrEnum):
    """Why a policy has the desired count it has (one per decision, exported as a metric label)."""

    DISABLED = "disabled"  # fleet or policy disabled: hands off, nothing created or stopped
    STEADY = "steady"  # within range: nothing to do
    MINIMUM = "minimum"  # below minimum: create up to it
    THRESHOLD = "threshold"  # used sockets (plus waiting sessions) reached the threshold
    SELECTORS = "selectors"  # waiting sessions need deployments carrying their selector tags
    STUCK = "stuck"  # a deployment stuck starting: stop it, a replacement follows within maximum
    IDLE = "idle"  # idle deployments stopped; what remains stays under threshold - hysteresis
    OVER_MAXIMUM = "over_maximum"  # more live than maximum: idle ones stopped, busy ones kept
    COOLDOWN = "cooldown"  # scale-in held: a scale-up happened less than cooldown_s ago
    DATA_UNKNOWN = "data_unknown"  # scale-in held: usage unknown or stale somewhere in the policy
    STABILISING = "stabilising"  # scale-in held: demand history shorter than the window


class Limit(enum.StrEnum):
    """What cut a scale-up short (None when nothing did)."""

    MAXIMUM = "maximum"
    BACKOFF = "backoff"
    ACCOUNT_DEPLOYMENTS = "account_deployments"  # applied by the loop (account-wide)
    ACCOUNT_RATE = "account_creates_per_minute"  # applied by the loop (account-wide)


@dataclass(frozen=True)
class Spec:
    """One policy's rules for one linked app version, with every default already resolved."""

    minimum: int
    maximum: int
    threshold: float
    hysteresis: float = 0.05  # fleet.models.Policy's default
    idle_s: float = 300.0
    cooldown_s: float = 60.0
    deploy_timeout_s: float = 300.0
    stale_after_s: float = 60.0
    sockets: int | None = None  # the app version's session_config.sockets (capacity of a new one)
    enabled: bool = True


@dataclass(frozen=True)
class Observed:
    """What the store knows about one live deployment of the policy."""

    request_id: str
    status: Status | None  # None: no report yet (starting) or an unknown status string
    unknown_status: bool = False  # a status string we do not know: never capacity, never stopped
    sockets: int | None = None
    usage: int | None = None  # None = unknown, never 0
    sessions: int = 0  # our confirmed sessions on it
    committed: int = 0  # sockets those sessions hold
    reserved: int = 0  # sockets held by live reservations
    created_at: float = 0.0
    ready_at: float | None = None
    last_heard: float = 0.0
    empty_since: float | None = None
    draining: bool = False
    stop_requested: bool = False


@dataclass(frozen=True)
class Memory:
    """What the scaler remembers about a policy between passes (kept in Redis across leaders)."""

    last_scale_up_at: float | None = None
    error_streak: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    backoff_until: float = 0.0

    @property
    def degraded(self) -> bool:
        return self.error_streak > 0


@dataclass(frozen=True)
class Counts:
    """The decision's inputs, as exported and stored in the decision history."""

    live: int = 0  # everything counting against maximum
    serving: int = 0
    pending: int = 0  # starting deployments plus creates in flight
    stopping: int = 0
    stuck: int = 0
    unknown: int = 0
    capacity: int = 0  # sockets of serving + pending deployments
    used: Fraction = Fraction(0)  # per serving deployment: max(platform usage, our sessions + reservations)
    waiting: int = 0  # sockets of sessions waiting for capacity (demand near these deployments)
    tagged: int = 0  # deployments waiting sessions' selector tags need (autoscaler.selectors)

    @property
    def utilisation(self) -> float:
        demand = self.used + self.waiting
        if self.capacity == 0:
            return 1.0 if demand > 0 else 0.0
        return float(demand / self.capacity)


@dataclass(frozen=True)
class Decision:
    """`desired`: capacity deployments the policy should have; `create`: how many to create now;
    `stop`: idle deployments to stop; `stuck`: deployments stuck starting, to stop (replaced by
    the normal create path within maximum)."""

    desired: int
    reason: Reason
    create: int = 0
    stop: tuple[str, ...] = ()
    stuck: tuple[str, ...] = ()
    limited: Limit | None = None
    held: Reason | None = None  # what kept an otherwise possible scale-in from happening
    counts: Counts = field(default_factory=Counts)

    @property
    def acts(self) -> bool:
        return bool(self.create or self.stop or self.stuck)


# --- exact threshold arithmetic ------------------------------------------------------------------
def exact(value: Number) -> Fraction:
    """The decimal a number was written as (0.8 -> 4/5), not its binary approximation."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return Fraction(repr(value))


def at_threshold(used: Number, capacity: Number, threshold: Number) -> bool:
    """Used sockets reach `threshold` of capacity (the scale-up rule). Nothing used: never."""
    u = exact(used)
    return u > 0 and u >= exact(threshold) * exact(capacity)


def deployments_to_add(used: Number, capacity: Number, threshold: Number, sockets: int | None) -> int:
    """The fewest new deployments of `sockets` each that bring utilisation under the threshold.

    used / (capacity + n * sockets) < threshold  <=>  n > (used / threshold - capacity) / sockets.
    Capacity of a new deployment unknown: add one and look again once it reports.
    """
    if not at_threshold(used, capacity, threshold):
        return 0
    if not sockets or sockets <= 0:
        return 1
    over = exact(used) / exact(threshold) - exact(capacity)
    return math.floor(over / sockets) + 1


def under_after_removal(used: Number, capacity_left: Number, threshold: Number, hysteresis: Number) -> bool:
    """What remains after a stop stays under threshold - hysteresis (nothing used: always)."""
    u = exact(used)
    if u == 0:
        return True
    return u < (exact(threshold) - exact(hysteresis)) * exact(capacity_left)


# --- classification --------------------------------------------------------------------------------
def is_stuck(d: Observed, now: float, timeout_s: float) -> bool:
    """Still starting (or never reported) past the deploy timeout, and not already being stopped."""
    if d.draining or d.stop_requested or d.unknown_status:
        return False
    starting = d.status is None or d.status.starting
    return starting and now - d.created_at > timeout_s


def _empty_for(d: Observed, now: float, idle_s: float) -> bool:
    return d.empty_since is not None and now - d.empty_since >= idle_s and not d.draining


def is_idle(d: Observed, now: float, spec: Spec) -> bool:
    """Safe to stop and empty for the idle time: READY, usage known 0, no session, no reservation,
    fresh data. The store re-checks the first four atomically when it drains."""
    return (
        d.status is Status.READY
        and not d.draining
        and not d.stop_requested
        and d.usage == 0
        and d.sessions == 0
        and d.committed == 0
        and d.reserved == 0
        and d.empty_since is not None
        and now - d.empty_since >= spec.idle_s
        and now - d.last_heard <= spec.stale_after_s
    )


@dataclass
class _Tally:
    serving: list[Observed] = field(default_factory=list)
    pending: list[Observed] = field(default_factory=list)
    stuck: list[Observed] = field(default_factory=list)
    stopping: int = 0
    unknown: int = 0
    capacity: int = 0
    used: int = 0
    data_gap: bool = False  # usage unknown or stale on a serving deployment


def _capacity_of(d: Observed, spec: Spec) -> int | None:
    return d.sockets if d.sockets is not None else spec.sockets


_TERMINAL = frozenset((Status.TERMINATED, Status.ERROR))


def _classify(deployments: Sequence[Observed], spec: Spec, now: float) -> _Tally:
    """One pass over the deployments (the hot loop of a 100k-deployment pass: kept flat)."""
    t = _Tally()
    ready, terminating, default_cap = Status.READY, Status.TERMINATING, spec.sockets
    stuck_before, stale_before = now - spec.deploy_timeout_s, now - spec.stale_after_s
    for d in deployments:
        status = d.status
        if status in _TERMINAL:
            continue
        if d.draining or d.stop_requested or status is terminating:
            t.stopping += 1  # on its way out (ours or not): holds its slot, gives no capacity
        elif d.unknown_status:
            t.unknown += 1  # an unknown status never counts as capacity, and is never stopped
        elif status is ready:
            t.serving.append(d)
            cap = d.sockets if d.sockets is not None else default_cap
            usage = d.usage
            if cap is None or usage is None or d.last_heard < stale_before:
                t.data_gap = True
            t.capacity += cap or 0
            # HPA's rule for missing metrics: unknown usage does not push a scale-up (what we know,
            # our sessions and reservations, still counts) and blocks every scale-in.
            # The platform's usage already counts a session we created but have not confirmed yet,
            # which is still one of our reservations: adding the two counted it twice, and a burst
            # at threshold 1.0 bought a deployment nobody needed (e2e burst test). The placement's
            # own check stays conservative (fleet.store deployments.lua: usage + reservations).
            used = usage or 0
            ours = d.committed + d.reserved
            t.used += used if used > ours else ours
        elif d.created_at < stuck_before:
            t.stuck.append(d)  # starting (or never reported) past the deploy timeout
        else:
            # Still starting: pending capacity, or every tick would scale up again.
            t.pending.append(d)
            t.capacity += (d.sockets if d.sockets is not None else default_cap) or 0
    return t


# --- the decision ------------------------------------------------------------------------------------
def decide(
    spec: Spec,
    deployments: Sequence[Observed],
    *,
    now: float,
    memory: Memory = Memory(),
    in_flight: int = 0,
    waiting: int = 0,
    peak: Number | None = None,
    tagged: int = 0,
) -> Decision:
    """The desired state of one policy (for one linked app version) from scratch.

    `in_flight`: creates asked for whose deployment is not known yet (pending capacity, counted
    against maximum). `waiting`: sockets of sessions waiting for capacity near this policy.
    `peak`: the highest demand (used + reserved + waiting sockets) over the stabilisation window;
    None when the scaler has not watched the policy for a whole window (then no scale-in).
    `tagged`: new deployments that waiting sessions need because no live or pending deployment
    carries their selector tags (`autoscaler.selectors.plan`); at least that many are added, as
    any capacity is, within `maximum`. They also serve untagged demand, so the two needs overlap:
    the larger of them is added, not their sum.
    """
    t = _classify(deployments, spec, now)
    pending = len(t.pending) + in_flight
    capacity = t.capacity + in_flight * (spec.sockets or 0)
    effective = len(t.serving) + pending
    live = effective + t.stopping + len(t.stuck) + t.unknown
    counts = Counts(
        live=live,
        serving=len(t.serving),
        pending=pending,
        stopping=t.stopping,
        stuck=len(t.stuck),
        unknown=t.unknown,
        capacity=capacity,
        used=Fraction(t.used),
        waiting=waiting,
        tagged=tagged,
    )
    stuck_ids = tuple(d.request_id for d in t.stuck)
    if not spec.enabled:
        return Decision(desired=effective, reason=Reason.DISABLED, counts=counts)

    demand = t.used + waiting
    by_threshold = deployments_to_add(demand, capacity, spec.threshold, spec.sockets)
    add = max(by_threshold, tagged)
    proposal = max(effective + add, spec.minimum)
    if proposal > effective:
        reason = Reason.MINIMUM
        if effective + add >= spec.minimum and add > 0:
            reason = Reason.THRESHOLD if by_threshold >= tagged else Reason.SELECTORS
        return _scale_up(spec, memory, now, counts, effective, proposal, reason, stuck_ids)
    return _scale_in(spec, memory, now, counts, t, effective, stuck_ids, peak)


def _scale_up(
    spec: Spec,
    memory: Memory,
    now: float,
    counts: Counts,
    effective: int,
    proposal: int,
    reason: Reason,
    stuck_ids: tuple[str, ...],
) -> Decision:
    desired = min(proposal, spec.maximum)
    room = max(0, spec.maximum - counts.live)  # stopping and stuck ones hold their slot until gone
    create = min(proposal - effective, room)
    limited = Limit.MAXIMUM if create < proposal - effective else None
    if create and now < memory.backoff_until:
        create, limited = 0, Limit.BACKOFF
    if stuck_ids and reason is Reason.MINIMUM:
        reason = Reason.STUCK  # the stuck ones no longer count: their replacements restore minimum
    return Decision(
        desired=desired, reason=reason, create=create, stuck=stuck_ids, limited=limited, counts=counts
    )


def _scale_in(
    spec: Spec,
    memory: Memory,
    now: float,
    counts: Counts,
    t: _Tally,
    effective: int,
    stuck_ids: tuple[str, ...],
    peak: Number | None,
) -> Decision:
    steady_reason = Reason.STUCK if stuck_ids else Reason.STEADY
    candidates = sorted(
        (d for d in t.serving if is_idle(d, now, spec)), key=lambda d: (d.empty_since or 0.0, d.request_id)
    )
    if counts.live > spec.maximum:
        # Over maximum (it was lowered): trim idle deployments only; busy ones stay until empty.
        excess = counts.live - spec.maximum
        stop = _pick(candidates, excess, effective - spec.minimum)
        if stop:
            return Decision(
                desired=effective - len(stop),
                reason=Reason.OVER_MAXIMUM,
                stop=stop,
                stuck=stuck_ids,
                counts=counts,
            )
    if counts.waiting > 0 or effective <= spec.minimum:
        return Decision(desired=effective, reason=steady_reason, stuck=stuck_ids, counts=counts)
    if t.data_gap and any(_empty_for(d, now, spec.idle_s) for d in t.serving):
        # Something would be idle long enough, but what we know is missing or old: wait.
        return _held(effective, Reason.DATA_UNKNOWN, steady_reason, stuck_ids, counts)
    if not candidates:
        return Decision(desired=effective, reason=steady_reason, stuck=stuck_ids, counts=counts)
    if t.data_gap:
        return _held(effective, Reason.DATA_UNKNOWN, steady_reason, stuck_ids, counts)
    if memory.last_scale_up_at is not None and now - memory.last_scale_up_at < spec.cooldown_s:
        return _held(effective, Reason.COOLDOWN, steady_reason, stuck_ids, counts)
    if peak is None:
        return _held(effective, Reason.STABILISING, steady_reason, stuck_ids, counts)
    demand = max(exact(peak), counts.used + counts.waiting)
    keep = _capacity_to_keep(demand, spec.threshold, spec.hysteresis)
    chosen: list[str] = []
    capacity_left = counts.capacity
    for d in candidates:
        if effective - len(chosen) - 1 < spec.minimum:
            break
        left = capacity_left - (_capacity_of(d, spec) or 0)
        if left < keep:
            break
        chosen.append(d.request_id)
        capacity_left = left
    if not chosen:
        return Decision(desired=effective, reason=steady_reason, stuck=stuck_ids, counts=counts)
    return Decision(
        desired=effective - len(chosen),
        reason=Reason.IDLE,
        stop=tuple(chosen),
        stuck=stuck_ids,
        counts=counts,
    )


def _capacity_to_keep(demand: Fraction, threshold: Number, hysteresis: Number) -> float:
    """The least capacity (whole sockets) that keeps `under_after_removal` true, computed once per
    policy so the scale-in loop compares integers: demand < line * left <=> left > demand / line."""
    if demand == 0:
        return 0
    line = exact(threshold) - exact(hysteresis)
    if line <= 0:
        return math.inf  # nothing may go while anything is used
    return math.floor(demand / line) + 1


def _pick(candidates: Sequence[Observed], want: int, above_minimum: int) -> tuple[str, ...]:
    return tuple(d.request_id for d in candidates[: max(0, min(want, above_minimum))])


def _held(
    effective: int, held: Reason, reason: Reason, stuck_ids: tuple[str, ...], counts: Counts
) -> Decision:
    return Decision(desired=effective, reason=reason, held=held, stuck=stuck_ids, counts=counts)


# --- memory: scale-ups and the ERROR back-off -----------------------------------------------------
def after_scale_up(memory: Memory, now: float) -> Memory:
    return Memory(
        last_scale_up_at=now,
        error_streak=memory.error_streak,
        last_error=memory.last_error,
        last_error_at=memory.last_error_at,
        backoff_until=memory.backoff_until,
    )


def backoff_s(streak: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> float:
    """Exponential, capped: base, 2 base, 4 base, ... cap."""
    if streak <= 0:
        return 0.0
    return min(cap_s, base_s * 2.0 ** min(streak - 1, 32))


def after_error(
    memory: Memory, at: float, detail: str, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S
) -> Memory:
    """A deployment of the policy ended in ERROR (or a create was refused): back off longer."""
    streak = memory.error_streak + 1
    return Memory(
        last_scale_up_at=memory.last_scale_up_at,
        error_streak=streak,
        last_error=detail or "deployment ended in ERROR",
        last_error_at=at,
        backoff_until=at + backoff_s(streak, base_s, cap_s),
    )


def after_ready(memory: Memory, ready_at: float | None) -> Memory:
    """One deployment READY after the last error clears the back-off and the degraded flag."""
    if memory.error_streak == 0 or ready_at is None or ready_at <= memory.last_error_at:
        return memory
    return Memory(
        last_scale_up_at=memory.last_scale_up_at,
        last_error=memory.last_error,
        last_error_at=memory.last_error_at,
    )


# --- the stabilisation window -----------------------------------------------------------------------
class PeakWindow:
    """Highest demand over a sliding window (monotonic deque: O(1) amortised per sample).

    `peak` answers only once the window has been watched in full, else None: a scaler that just
    became leader does not know what happened before, so it does not scale in until it does.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[float, Fraction]] = deque()
        self._since: float | None = None

    def add(self, now: float, demand: Number) -> None:
        value = exact(demand)
        if self._since is None:
            self._since = now
        while self._samples and self._samples[-1][1] <= value:
            self._samples.pop()
        self._samples.append((now, value))

    def peak(self, now: float, window_s: float) -> Fraction | None:
        if self._since is None or now - self._since < window_s:
            return None
        while len(self._samples) > 1 and self._samples[0][0] < now - window_s:
            self._samples.popleft()
        return self._samples[0][1]
