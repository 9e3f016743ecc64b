"""Throttle of failed webhook authentications per client address. Pure: the clock is a parameter.

It is only consulted after a secret was found wrong or missing, so a request that carries a
right secret is never refused, whatever its address did before. What it bounds is the work and
the log volume an unauthenticated caller can cause; guessing is made hopeless by the secret's
length, not by this.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

FAILURES_PER_WINDOW = 20
WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10_000  # memory bound: the least recently failing addresses are forgotten


@dataclass(frozen=True)
class Verdict:
    throttled: bool
    retry_after_s: int = 0
    first_throttled: bool = False  # this failure started the throttling (log it once)


@dataclass
class _Client:
    times: deque[float]
    announced: bool = False


class FailureThrottle:
    def __init__(
        self,
        limit: int = FAILURES_PER_WINDOW,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def fail(self, client: str, now: float) -> Verdict:
        """Record one failure; throttled once more than `limit` fell within the window."""
        state = self._clients.pop(client, None) or _Client(deque(maxlen=self.limit + 1))
        self._clients[client] = state  # most recent last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        times = state.times
        while times and times[0] <= now - self.window_s:
            times.popleft()
        times.append(now)
        if len(times) <= self.limit:
            state.announced = False
            return Verdict(throttled=False)
        first, state.announced = not state.announced, True
        retry_after = max(1, int(times[0] + self.window_s - now + 0.999))
        return Verdict(throttled=True, retry_after_s=retry_after, first_throttled=first)

    def tracked(self) -> int:
        return len(self._clients)
