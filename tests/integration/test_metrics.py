"""The scrape-time collectors against a real Redis, and the web's /metrics through TestClient."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis as SyncRedis
from rq import Queue, SimpleWorker
from rq.job import Job

from fleet.collectors import RedisProbe, RqQueueCollector, probe_connection
from fleet.devredis import free_port
from fleet.jobs import JobQueue
from tests.fixtures.web import WebFactory


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(*collectors: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)  # type: ignore[arg-type]
    return samples(generate_latest(registry).decode())


@pytest.fixture
def rq_redis(redis_url: str, prefix: str) -> Iterator[SyncRedis]:
    """RQ on the suite's Redis; afterwards every job of the test's queue and the queue's keys go."""
    conn = SyncRedis.from_url(redis_url)
    yield conn
    queue = Queue(f"{prefix}-platform", connection=conn)
    registries = [getattr(queue, f"{s}_job_registry") for s in ("started", "finished", "failed", "scheduled")]
    ids = set(queue.get_job_ids()).union(*(r.get_job_ids() for r in registries))
    for job in Job.fetch_many(list(ids), connection=conn):
        if job is not None:
            job.delete()
    for key in list(conn.scan_iter(match=f"rq:*{prefix}*", count=1000)):
        conn.delete(key)
    conn.close()


def test_redis_probe_reports_up_and_latency(redis_url: str) -> None:
    got = scrape(RedisProbe(lambda: probe_connection(redis_url)))
    assert got[("fleet_redis_up", ())] == 1.0
    assert 0 < got[("fleet_redis_ping_duration_seconds", ())] < 1


def test_redis_probe_reports_down_fast_without_failing_the_scrape() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    got = scrape(RedisProbe(lambda: probe_connection(dead)))
    assert got == {("fleet_redis_up", ()): 0.0}
    assert time.monotonic() - started < 2.0  # no redis-py retry loop behind a scrape


def test_rq_collector_counts_queue_states_workers_and_age(
    redis_url: str, prefix: str, rq_redis: SyncRedis
) -> None:
    name = f"{prefix}-platform"
    jobs = JobQueue(rq_redis, name)
    now = [time.time()]
    collector = RqQueueCollector(lambda: probe_connection(redis_url), name, clock=lambda: now[0])
    q = (("queue", name),)

    empty = scrape(collector)
    assert empty[("fleet_rq_jobs", (*q, ("state", "queued")))] == 0
    assert empty[("fleet_rq_oldest_queued_job_age_seconds", q)] == 0
    assert empty[("fleet_rq_workers", q)] == 0

    queue = Queue(name, connection=rq_redis)
    queue.enqueue("math.sqrt", -1)  # fails when run: ValueError
    queue.enqueue("math.sqrt", 4)
    jobs.enqueue("math.sqrt", {}, job_id=f"{prefix}-third")
    now[0] = time.time() + 30
    waiting = scrape(collector)
    assert waiting[("fleet_rq_jobs", (*q, ("state", "queued")))] == 3
    assert 29 <= waiting[("fleet_rq_oldest_queued_job_age_seconds", q)] < 40

    SimpleWorker([queue], connection=rq_redis).work(burst=True, max_jobs=1)
    after = scrape(collector)
    assert after[("fleet_rq_jobs", (*q, ("state", "queued")))] == 2
    assert after[("fleet_rq_jobs", (*q, ("state", "failed")))] == 1


def test_rq_collector_yields_nothing_when_redis_is_down() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert scrape(RqQueueCollector(lambda: probe_connection(dead), "q")) == {}


def test_web_metrics_include_the_redis_probe(web_factory: WebFactory) -> None:
    app = web_factory()
    app.client.post("/webhooks/deployments", json={})  # no secret: a rejection counted
    r = app.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("fleet_redis_up", ())] == 1.0
    rejected = [v for (n, labels), v in got.items() if n == "fleet_webhook_rejections_total"]
    assert sum(rejected) >= 1


def test_web_metrics_answer_when_redis_is_gone(web_factory: WebFactory) -> None:
    app = web_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    r = app.client.get("/metrics")
    assert r.status_code == 200
    assert samples(r.text)[("fleet_redis_up", ())] == 0.0
    assert time.monotonic() - started < 2.0
