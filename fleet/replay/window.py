"""The highest demand of a unit over the scaler's stabilisation window, in virtual time.

The production scaler samples demand on every pass (at least once a second) into
`autoscaler.policy.PeakWindow` and hands `peak` to `decide`. The replay passes the same value,
computed exactly from the piecewise-constant demand: at every change the ending value is recorded
with its *end* time and the new value with its start time, so the peak over `[now - w, now]` is the
largest value that held at any instant of that interval, as a scaler sampling continuously would
see it. It also answers the question the replay needs to wake the scaler only when a scale-in could
happen: when does the peak fall below a level?
"""

from __future__ import annotations

from collections import deque

FOREVER = float("inf")


class DemandWindow:
    """Monotonic deque of (time, demand): values never increase from front to back."""

    __slots__ = ("_samples", "current", "since")

    def __init__(self, since: float, demand: int = 0) -> None:
        self.since = since  # the first instant watched: no peak until a whole window was seen
        self.current = demand
        self._samples: deque[tuple[float, int]] = deque([(since, demand)])

    def set(self, now: float, demand: int) -> None:
        old = self.current
        if demand == old:
            return
        self.current = demand
        samples = self._samples
        if demand < old:
            # The old value held until now: keep it with its end time, then the new one.
            while samples and samples[-1][1] <= old:
                samples.pop()
            samples.append((now, old))
        else:
            while samples and samples[-1][1] <= demand:
                samples.pop()
        samples.append((now, demand))

    def _expire(self, now: float, window_s: float) -> None:
        samples = self._samples
        horizon = now - window_s
        while len(samples) > 1 and samples[0][0] < horizon:
            samples.popleft()

    def peak(self, now: float, window_s: float) -> int | None:
        """The highest demand over the last `window_s`; None before a whole window was watched
        (as `PeakWindow.peak`)."""
        if now - self.since < window_s:
            return None
        self._expire(now, window_s)
        return self._samples[0][1]

    def below_from(self, level: int, now: float, window_s: float) -> float | None:
        """From when on the peak stays below `level` if demand does not change again: `now` or a
        later time, FOREVER while the current demand itself is at or above `level`."""
        if self.current >= level:
            return FOREVER
        self._expire(now, window_s)
        last = None
        for t, value in self._samples:
            if value < level:
                break
            last = t
        if last is None:
            return now
        # A sample at exactly now - window still counts (PeakWindow keeps it): one millisecond later.
        return max(now, last + window_s + 1e-3)
