"""Scrape-time collectors: values read from Redis when Prometheus asks, not counted in-process.

- `RedisProbe` (every process): can this process reach Redis right now? A fresh connection per
  scrape with short timeouts, so a dead Redis shows as `fleet_redis_up 0` within one scrape
  instead of a scrape that hangs in redis-py's retries.
- `RqQueueCollector` (the scaler): the RQ queue's depth per state, its workers and the age of the
  oldest waiting job, read through RQ's own API (RQ owns its keys). Jobs run in `fleet worker`
  processes that may come and go; the queue in Redis is the one place that knows the backlog.

Both yield nothing they cannot read: a failed read never fails the whole scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from fleet.logging import event

log = logging.getLogger("fleet.collectors")

PROBE_TIMEOUT_S = 0.5
# Job states a backlog is made of, mapped to the RQ registry that holds them ("queued" is the queue).
RQ_REGISTRY_STATES = ("started", "scheduled", "deferred", "failed")

RedisFactory = Callable[[], SyncRedis]


def probe_connection(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> SyncRedis:
    """A client that fails fast: no retries, short timeouts (bytes mode, as RQ expects)."""
    return SyncRedis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisProbe(Collector):
    """`fleet_redis_up` and `fleet_redis_ping_duration_seconds` from one PING per scrape."""

    def __init__(self, connect: RedisFactory) -> None:
        self.connect = connect
        self.was_up: bool | None = None  # log changes only, not every failed scrape

    def describe(self) -> list[Metric]:
        return [self._up(), self._latency()]

    @staticmethod
    def _up() -> GaugeMetricFamily:
        return GaugeMetricFamily("fleet_redis_up", "1 if this process reached Redis at the last scrape")

    @staticmethod
    def _latency() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "fleet_redis_ping_duration_seconds", "Round trip of the scrape's Redis PING (connect included)"
        )

    def collect(self) -> Iterator[Metric]:
        up, latency = self._up(), self._latency()
        started = time.perf_counter()
        try:
            with self.connect() as redis:
                redis.ping()
        except (RedisError, OSError) as err:
            self._changed(False, error=type(err).__name__)
            up.add_metric([], 0)
            yield up
            return
        self._changed(True)
        up.add_metric([], 1)
        latency.add_metric([], time.perf_counter() - started)
        yield up
        yield latency

    def _changed(self, up: bool, **fields: str) -> None:
        if up != self.was_up and (self.was_up is not None or not up):
            event(log, "redis_probe", logging.INFO if up else logging.WARNING, up=up, **fields)
        self.was_up = up


class RqQueueCollector(Collector):
    """`fleet_rq_jobs{queue,state}`, `fleet_rq_workers{queue}`, `fleet_rq_oldest_queued_job_age_seconds`."""

    def __init__(
        self, connect: RedisFactory, queue_name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.connect = connect
        self.queue_name = queue_name
        self.clock = clock

    def describe(self) -> list[Metric]:
        return list(self._families())

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "fleet_rq_jobs",
                "RQ jobs of the platform queue by state (queued, started, scheduled, deferred, failed)",
                labels=["queue", "state"],
            ),
            GaugeMetricFamily("fleet_rq_workers", "RQ workers listening on the queue", labels=["queue"]),
            GaugeMetricFamily(
                "fleet_rq_oldest_queued_job_age_seconds",
                "Age of the oldest job waiting in the queue (0 when empty)",
                labels=["queue"],
            ),
        )

    def collect(self) -> Iterator[Metric]:
        from rq import Queue, Worker

        jobs, workers, oldest = self._families()
        try:
            with self.connect() as redis:
                queue = Queue(self.queue_name, connection=redis)
                jobs.add_metric([queue.name, "queued"], queue.count)
                for state in RQ_REGISTRY_STATES:
                    registry = getattr(queue, f"{state}_job_registry")
                    # cleanup=False: a scrape only reads; RQ's own maintenance moves expired jobs.
                    jobs.add_metric([queue.name, state], registry.get_job_count(cleanup=False))
                workers.add_metric([queue.name], Worker.count(queue=queue))
                oldest.add_metric([queue.name], self._oldest_age_s(queue))
        except (RedisError, OSError) as err:
            event(log, "rq_collect_failed", logging.WARNING, queue=self.queue_name, error=type(err).__name__)
            return
        yield from (jobs, workers, oldest)

    def _oldest_age_s(self, queue: object) -> float:
        from rq import Queue

        assert isinstance(queue, Queue)
        head = queue.get_job_ids(0, 1)  # RQ appends at the tail and pops the head: the head is oldest
        job = queue.fetch_job(head[0]) if head else None
        enqueued: datetime | None = job.enqueued_at if job is not None else None
        if enqueued is None:
            return 0.0
        if enqueued.tzinfo is None:  # RQ stores naive UTC
            enqueued = enqueued.replace(tzinfo=UTC)
        return max(0.0, self.clock() - enqueued.timestamp())
