"""Whether capacity can still be made for a session that found no room now. Pure.

A session waits only when the fleet policies linked to its app version can still bring sockets:
deployments that are starting, free sockets the waiting sessions have not taken yet, or room under
a policy's `maximum` for new ones. Sessions already
waiting for the same app version claim that headroom first, so a burst beyond what the policies
can ever hold is refused at once (503 with Retry-After) instead of waiting to become unprocessable.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    WAIT = "wait"  # capacity is coming or can be made
    NO_POLICY = "no_policy"  # no enabled fleet policy creates deployments of this app version
    AT_MAXIMUM = "at_maximum"  # every matching policy is at its maximum and what it has is taken


@dataclass(frozen=True)
class PolicyRoom:
    """One enabled policy of an enabled fleet linked to the app version."""

    fleet: str
    policy: str
    maximum: int
    live: int  # its live deployments of any version (they all count against maximum)
    open_sockets: int  # sockets of its deployments of this version still to come or free (not draining)


@dataclass(frozen=True)
class Outlook:
    outcome: Outcome
    headroom: int | None  # sockets that can still appear, None when unbounded by what we know
    waiting: int  # sockets already waiting for this app version

    @property
    def can_wait(self) -> bool:
        return self.outcome is Outcome.WAIT


def outlook(
    rooms: Sequence[PolicyRoom], sockets_per_deployment: int | None, waiting: int, size: int
) -> Outlook:
    """Whether `size` more sockets can be expected after the `waiting` ones are served."""
    if not rooms:
        return Outlook(Outcome.NO_POLICY, 0, waiting)
    new_deployments = sum(max(0, r.maximum - r.live) for r in rooms)
    open_sockets = sum(r.open_sockets for r in rooms)
    if sockets_per_deployment is None:
        # Unknown deployment size: any room for a deployment or anything starting may serve it.
        can = new_deployments > 0 or open_sockets > 0
        return Outlook(Outcome.WAIT if can else Outcome.AT_MAXIMUM, None, waiting)
    headroom = new_deployments * sockets_per_deployment + open_sockets
    can = headroom - waiting >= size
    return Outlook(Outcome.WAIT if can else Outcome.AT_MAXIMUM, headroom, waiting)
