"""The simulated Codema platform as a world model: no HTTP, no asyncio, no reading of real time.

The same model runs in real time behind the HTTP facade (`codema.sim.server`) and in virtual time
for offline replays. Usage in virtual time::

    t = [0.0]
    world = World(clock=lambda: t[0], rng=random.Random(1), config=WorldConfig(boot_s=30))
    world.create_app("game")
    world.create_version("game", {"name": "v1", "docker_repository": "r", "docker_image": "i",
                                  "docker_tag": "1", "req_cpu": 256, "req_memory": 256,
                                  "session_config": {"kind": "Seat", "sockets": 10, "empty_ttl": 5}})
    d = world.deploy(DeploySpec("game", "v1", filters=(LocationFilter("continent", ("Europe",)),)))
    t[0] = 31.0
    world.advance()                      # d.status is Status.READY now
    s = world.create_session(SessionSpec("game", "v1", ip_list=("81.2.69.160",),
                                         deployment_request_id=d.request_id))
    world.delete_session(s.session_id)   # after 5 "minutes" with no session, d terminates by itself

Contract:
- `clock()` is the only source of time; `advance()` applies every timed transition due up to it
  in time order, each at its own due time (so a jump of an hour is exact). Every public method
  advances first, so a caller only moves its clock. `next_due()` says when something happens
  next, for event-driven replays.
- Randomness comes only from `rng`: the same seed, clock readings and calls give the same world.
- Refusals raise `SimError` subclasses (`BadRequest` 400, `NotFound` 404, `Conflict` 409,
  `Gone` 410, `Unprocessable` 422, `Forbidden` 401) carrying the platform's status code.
- Webhooks the platform would send accumulate in an outbox; `drain_outbox()` hands them over.
- Records returned (`DeploymentRecord`, `SessionRecord`, ...) are live views owned by the world:
  read them, never modify them.

Main calls: `create_app`, `create_version`, `deploy`, `deployment`, `stop`, `self_stop`,
`bulk_stop`, `list_deployments`, `create_session`, `session`, `delete_session`, `add_users`,
`remove_users`, `list_sessions`, `request_telemetry`, `telemetry_result`, `set_faults`,
`snapshot`, `advance`, `next_due`, `drain_outbox`.
"""

from __future__ import annotations

from typing import Any

from codema.sim.faults import Faults
from codema.sim.geo import LOCATIONS
from codema.sim.records import BadRequest, Status
from codema.sim.state import WorldConfig
from codema.sim.telemetry import TelemetryPart
from codema.sim.views import fmt_time

__all__ = ["World", "WorldConfig"]


class World(TelemetryPart):
    """The whole simulated platform. See the module docstring for the contract."""

    def _apply(self, action: str, key: str) -> None:
        if action.startswith("telemetry_"):
            if action == "telemetry_done":
                self._on_telemetry_done(key)
            else:
                self.telemetry.pop(key, None)
            return
        d = self.deployments.get(key)
        if d is None or d.terminal:
            return
        if action.startswith("phase:"):
            self._on_phase(d, Status[action.split(":", 1)[1]])
        elif action == "launch_end":
            self._on_launch_end(d)
        elif action == "terminated":
            self.finish(d)
        elif action == "empty_ttl":
            self._on_empty_ttl(d)
        elif action == "max_duration":
            self._on_max_duration(d)

    def set_faults(self, faults: Faults) -> None:
        """Install new fault settings. Cities newly in `outages` lose their deployments at once."""
        cities = {loc.city.lower() for loc in LOCATIONS}
        unknown = [c for c in faults.outages if c.lower() not in cities]
        if unknown:
            raise BadRequest(f"outages: unknown city {unknown[0]!r}; see GET /v1/locations")
        self.advance()
        self.faults = faults
        self.apply_outages()

    def snapshot(self) -> dict[str, Any]:
        """Ground truth: every deployment (terminated ones included) and every live session."""
        self.advance()
        return {
            "now": self.now,
            "now_text": fmt_time(self.now),
            "deployments": [self._truth(d) for d in self.deployments.values()],
            "sessions": [
                {
                    "session_id": s.session_id,
                    "app": s.app,
                    "version": s.version,
                    "kind": s.kind.value,
                    "status": s.status.wire,
                    "linked": s.linked,
                    "deployment_request_id": s.deployment_id,
                    "ips": [u.ip for u in s.users],
                    "size": s.size if s.linked else 0,
                    "error": s.error,
                }
                for s in self.sessions.values()
            ],
            "telemetry_requests": len(self.telemetry),
        }

    def _truth(self, d: Any) -> dict[str, Any]:
        return {
            "request_id": d.request_id,
            "app": d.app,
            "version": d.version,
            "status": d.status.wire,
            "fate": d.fate.value,
            "sockets": d.sockets,
            "sockets_usage": d.used,
            "sessions": list(d.session_ids),
            "tags": list(d.tags),
            "env_vars": [{"key": k, "value": v} for k, v in d.env_vars],
            "location": {**d.location.wire(), "region": d.location.region, "tags": list(d.location.tags)},
            "created": d.created,
            "ready_at": d.ready_at,
            "ended_at": d.ended_at,
            "end_reason": d.end_reason,
            "stop_requested": d.stop_requested,
            "is_joinable_by_session": d.is_joinable,
            "delete_url": f"/v1/self/stop/{d.request_id}/{d.access_point_id}",
            "delete_token": d.delete_token,
            "context_url": f"/v1/context/{d.request_id}/{d.security_number}",
            "context_token": d.context_token,
        }
