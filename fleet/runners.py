"""What each Procfile command runs. Settings are read once here and passed down."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from fleet.logging import configure, event
from fleet.observability import Role
from fleet.settings import Settings

log = logging.getLogger("fleet.runner")


def _secrets(settings: Settings) -> list[str]:
    return [
        settings.codema_api_token.get_secret_value(),
        settings.api_token.get_secret_value(),
        *settings.webhook_secrets(),
    ]


def setup_logging(settings: Settings) -> None:
    configure(settings.log_level, settings.log_format, _secrets(settings), access_log=settings.access_log)


def check_web_settings(settings: Settings) -> str | None:
    """Why the web process must not start, or None."""
    if not settings.webhook_secrets() and not settings.allow_insecure_webhooks:
        return (
            "FLEET_WEBHOOK_SECRET is not set: platform callbacks would be unauthenticated. "
            "Set it (comma-separated for rotation) or set FLEET_ALLOW_INSECURE_WEBHOOKS=1."
        )
    return None


def run_web(host: str, port: int, *, workers: int = 1) -> int:
    import uvicorn

    from fleet.observability import prepare_multiprocess_dir, use_in_memory_metrics

    settings = Settings()
    setup_logging(settings)
    problem = check_web_settings(settings)
    if problem:
        print(f"fleet web: {problem}", file=sys.stderr)
        return 2
    if workers > 1:
        # Every uvicorn worker writes its samples here; /metrics aggregates the family.
        metrics_dir = settings.metrics_dir or str(Path(tempfile.gettempdir()) / f"fleet-metrics-web-{port}")
        prepare_multiprocess_dir(metrics_dir)
        os.environ["FLEET_METRICS_DIR"] = metrics_dir  # the worker processes read it through Settings
    else:
        # One process: values in memory. Multiprocess values write a file and ask the kernel for
        # the pid on every update (~4 % of the web process's CPU under callback load).
        use_in_memory_metrics()
    event(log, "web_start", host=host, port=port, workers=workers)
    uvicorn.run(
        "fleet.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def serve_metrics(port: int, settings: Settings | None = None, role: Role = "worker") -> None:
    """Expose this process's registry on its own port (scaler and worker do not fork)."""
    if port:
        from prometheus_client import start_http_server

        from fleet.observability import install_collectors

        if settings is not None:
            install_collectors(settings, role)  # Redis probe; the scaler also reads the RQ queue
        start_http_server(port, addr="0.0.0.0")
        event(log, "metrics_listen", port=port)


def run_scaler(*, once: bool = False, metrics_port: int = 0) -> int:
    from autoscaler.loop import run_scaler as scaler_main
    from fleet.bootstrap import bootstrap

    settings = Settings()
    setup_logging(settings)
    event(log, "scaler_start", holder=f"{socket.gethostname()}:{os.getpid()}", once=once)
    serve_metrics(metrics_port, settings, "scaler")

    async def main() -> None:
        services = bootstrap(settings)
        try:
            await scaler_main(services, once=once)
        finally:
            await services.aclose()

    asyncio.run(main())
    return 0


def run_worker(*, burst: bool = False, metrics_port: int = 0) -> int:
    from redis import Redis as SyncRedis
    from rq import Queue, SimpleWorker

    from fleet.bootstrap import bootstrap
    from fleet.store.keys import Keys
    from fleet.worker import WorkerRuntime, install

    settings = Settings()
    setup_logging(settings)
    serve_metrics(metrics_port, settings, "worker")
    runtime = WorkerRuntime(lambda: bootstrap(settings))
    install(runtime)
    connection = SyncRedis.from_url(settings.redis_url)
    queue = Queue(Keys(settings.redis_prefix).queue_name(), connection=connection)
    worker = SimpleWorker([queue], connection=connection, maintenance_interval=30)
    event(log, "worker_start", queue=queue.name, burst=burst)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    finally:
        install(None)
        runtime.close()
    return 0


def run_apply(path: str, *, prune: bool = False) -> int:
    from autoscaler.config import ConfigError, apply_file
    from codema.errors import PlatformError
    from fleet.bootstrap import bootstrap

    settings = Settings()
    setup_logging(settings)

    async def main() -> int:
        services = bootstrap(settings)
        try:
            summary = await apply_file(services, Path(path), prune=prune)
        except ConfigError as err:
            print(f"fleet apply: {path} was not applied:", file=sys.stderr)
            for problem in err.problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        except PlatformError as err:
            print(f"fleet apply: the platform refused or failed: {err}", file=sys.stderr)
            return 1
        finally:
            await services.aclose()
        print(summary)
        return 0

    return asyncio.run(main())
