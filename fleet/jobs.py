"""The job queue: RQ on the shared Redis. Only the scaler enqueues; `fleet worker` runs the jobs.

Jobs carry the scaler leader's fencing token; a worker drops a job whose token is older than the
latest lease grant (design.md §6). Retries: the Codema client retries one call; RQ re-runs a job
only when the client gave up with a retryable error (`Retry` below); the scaler never retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis as SyncRedis
from rq import Queue, Retry

JOB_TIMEOUT_S = 120
RESULT_TTL_S = 600
FAILURE_TTL_S = 24 * 3600
RETRY_INTERVALS_S = [2, 5, 15, 30]


@dataclass
class JobQueue:
    """Enqueue platform calls as RQ jobs (sync redis connection, as RQ requires bytes mode)."""

    connection: SyncRedis
    name: str

    @classmethod
    def from_url(cls, url: str, name: str) -> JobQueue:
        return cls(SyncRedis.from_url(url), name)

    @property
    def queue(self) -> Queue:
        return Queue(self.name, connection=self.connection, default_timeout=JOB_TIMEOUT_S)

    def enqueue(self, func: str, payload: dict[str, Any], *, job_id: str | None = None) -> str:
        job = self.queue.enqueue(
            func,
            payload,
            job_id=job_id,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            retry=Retry(max=len(RETRY_INTERVALS_S), interval=RETRY_INTERVALS_S),
        )
        return str(job.id)

    def depth(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.connection.close()
