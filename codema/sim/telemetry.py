"""Active-deployment telemetry: rank running deployments for a set of player IPs.

Each READY deployment in the request "reports" at a random moment within `telemetry_delay_s`;
until the last one has, results carry `partial_result: true` and rank only those that reported.
The estimate is the mean round-trip time from the players' locations to the deployment's city
(`codema.sim.geo`), with a little jitter so equal distances do not tie. Deployments that are not
READY, or unknown, never report. The webhook (if any) is queued when the result is complete; the
HTTP facade retries it up to 5 times on a non-2xx answer, as the platform documents.
"""

from __future__ import annotations

from codema.sim.geo import location_point, mean_rtt_ms
from codema.sim.records import (
    BadRequest,
    NotFound,
    Status,
    TelemetryRecord,
    TelemetryResult,
    Unprocessable,
)
from codema.sim.sessions import SessionsPart
from codema.sim.views import telemetry as telemetry_view

JITTER_MS = 0.5


class TelemetryPart(SessionsPart):
    def request_telemetry(
        self, deployments: list[str], ips: list[str], webhook_url: str | None = None
    ) -> TelemetryRecord:
        """`POST /v1/telemetry/active-deployments`."""
        self.advance()
        if not deployments:
            raise BadRequest("deployments: at least one request_id is required")
        if not ips:
            raise BadRequest("ips: at least one IP is required")
        players = self.points_of(self.users_of(ips, (), "ips"))
        known = [rid for rid in dict.fromkeys(deployments) if rid in self.deployments]
        if not known:
            raise Unprocessable("deployments: none of these deployments exists")
        delay = self.config.telemetry_delay_s
        key = "-".join(self.new_hex(n) for n in (8, 4, 4, 4, 12))
        rec = TelemetryRecord(
            retrieval_key=key,
            deployments=known,
            ips=list(ips),
            webhook_url=webhook_url,
            created=self.now,
            done_at=self.now + delay,
            expire_at=self.now + delay + self.config.telemetry_ttl_s,
        )
        for rid in known:
            d = self.deployments[rid]
            if d.status is not Status.READY:
                continue
            rtt = mean_rtt_ms(players, location_point(d.location)) + self.rng.random() * JITTER_MS
            rec.measures[rid] = (self.now + delay * (0.2 + 0.8 * self.rng.random()), rtt)
        self.telemetry[key] = rec
        self.schedule(rec.done_at, "telemetry_done", key)
        self.schedule(rec.expire_at, "telemetry_expire", key)
        return rec

    def telemetry_result(self, retrieval_key: str) -> TelemetryResult:
        """`GET /v1/telemetry/active-deployments/{key}`: best first; partial while measuring."""
        self.advance()
        rec = self.telemetry.get(retrieval_key)
        if rec is None:
            raise NotFound(f"retrieval key {retrieval_key} not found or expired")
        return self._result(rec)

    def _result(self, rec: TelemetryRecord) -> TelemetryResult:
        partial = self.now < rec.done_at
        reported = [(rtt, rid) for rid, (at, rtt) in rec.measures.items() if not partial or at <= self.now]
        return TelemetryResult(rec.retrieval_key, [rid for _, rid in sorted(reported)], partial)

    def _on_telemetry_done(self, key: str) -> None:
        rec = self.telemetry.get(key)
        if rec is not None:
            self.emit("telemetry", rec.webhook_url, telemetry_view(self._result(rec)), key)
