"""Waiting sessions with selectors: which deployments a policy must create so they can be placed. Pure.

A session lands only on a deployment carrying every one of its filtering selector tags (`tag_only`
tags filter nothing). The platform's own autodeploy answers such a session with a deployment
tagged with the session's selector tags and given each selector's `env`; the policy's plain
deployments never carry them, so without this a session with filtering selectors would wait until
it became unprocessable.

`plan` walks the waiting sessions of one policy unit oldest first. A session that some live or
pending deployment of the unit can take (its tags include the session's, with enough free or
still-to-come sockets) needs nothing; otherwise it joins a deployment already planned for an
earlier session when that one fits (tags, room and compatible env), or opens a new one. Each
planned deployment carries the filtering and `tag_only` tags and the env of the sessions it was
planned for. The policy core (`autoscaler.policy.decide`, its `tagged` input) turns the number of
planned deployments into creates within `maximum`; the scaler gives the first creates these tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The room of a deployment whose capacity is not known yet: as the core adds one deployment of
# unknown capacity and looks again once it reports, one such deployment is planned for everyone.
UNKNOWN_ROOM = 2**31 - 1


@dataclass(frozen=True)
class Need:
    """One waiting session as selectors see it."""

    sockets: int
    tags: frozenset[str] = frozenset()  # filtering: a deployment must carry all of them
    tag_only: frozenset[str] = frozenset()  # given to a deployment created for it, never required
    env: tuple[tuple[str, str], ...] = ()  # (key, value), first value of a key wins


@dataclass(frozen=True)
class Room:
    """One live or pending deployment of the unit: its tags and the sockets it can still take."""

    tags: frozenset[str]
    free: int


@dataclass(frozen=True)
class Tagged:
    """What one deployment created for waiting sessions carries (sorted, so plans compare equal)."""

    tags: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SelectorPlan:
    creates: tuple[Tagged, ...] = ()  # oldest session's deployment first
    too_large: int = 0  # sessions bigger than a whole new deployment: no create can help them

    def __len__(self) -> int:
        return len(self.creates)


def need_of(sockets: int, selectors: Iterable[Mapping[str, Any]]) -> Need:
    """A session record's `selectors` ({"tag", "tag_only", "env": {"key", "value"}}) as a Need."""
    tags: set[str] = set()
    tag_only: set[str] = set()
    env: dict[str, str] = {}
    for s in selectors:
        tag = str(s.get("tag") or "")
        if tag:
            (tag_only if s.get("tag_only") else tags).add(tag)
        pair = s.get("env")
        if isinstance(pair, Mapping) and pair.get("key") and pair.get("value") is not None:
            env.setdefault(str(pair["key"]), str(pair["value"]))
    return Need(sockets, frozenset(tags), frozenset(tag_only - tags), tuple(sorted(env.items())))


@dataclass
class _Planned:
    tags: set[str]
    env: dict[str, str]
    free: int

    def takes(self, need: Need) -> bool:
        return (
            need.tags <= self.tags
            and need.sockets <= self.free
            and all(self.env.get(k, v) == v for k, v in need.env)
        )

    def add(self, need: Need) -> None:
        self.tags |= need.tags | need.tag_only
        for k, v in need.env:
            self.env.setdefault(k, v)
        self.free -= need.sockets


def _take_room(free: list[int], rooms: Sequence[Room], need: Need) -> bool:
    """Consume room for `need` on the first existing deployment carrying its tags."""
    for i, room in enumerate(rooms):
        if need.tags <= room.tags and need.sockets <= free[i]:
            free[i] -= need.sockets
            return True
    return False


def plan(needs: Sequence[Need], rooms: Sequence[Room], sockets: int | None) -> SelectorPlan:
    """The deployments waiting sessions with filtering selectors need (module docstring).

    `needs`: the unit's waiting sessions, oldest first; `rooms`: its live and pending deployments;
    `sockets`: the capacity of a new deployment (None: unknown, see UNKNOWN_ROOM).
    Sessions without filtering tags need nothing here: any deployment takes them, and the
    threshold rule already counts their sockets."""
    free = [r.free for r in rooms]
    planned: list[_Planned] = []
    too_large = 0
    for need in needs:
        if not need.tags or need.sockets <= 0 or _take_room(free, rooms, need):
            continue
        if sockets is not None and need.sockets > sockets:
            too_large += 1
            continue
        target = next((p for p in planned if p.takes(need)), None)
        if target is None:
            target = _Planned(set(), {}, sockets if sockets is not None else UNKNOWN_ROOM)
            planned.append(target)
        target.add(need)
    creates = tuple(Tagged(tuple(sorted(p.tags)), tuple(sorted(p.env.items()))) for p in planned)
    return SelectorPlan(creates, too_large)
