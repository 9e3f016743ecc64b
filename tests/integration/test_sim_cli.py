"""`fleet sim` as a user starts it: flags, CODEMA_API_TOKEN from the environment, no secret in logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.sim import WebhookSink, wait_for

TOKEN = "cli-platform-token-123"
WEBHOOK_SECRET = "cli-webhook-secret-456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fleet_sim(*flags: str, token: str = TOKEN) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEMA_", "FLEET_CODEMA"))}
    env["CODEMA_API_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "sim", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def running() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = fleet_sim(
        "--host", "127.0.0.1", "--port", str(port), "--boot-s", "0.2", "--error-rate", "beacons=1"
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/v1/locations", timeout=1).status_code == 401
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    wait_for(up, 20, "fleet sim to answer")
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_fleet_sim_serves_with_its_flags_and_logs_no_secret(
    running: tuple[str, subprocess.Popen[str]], webhook_sink: WebhookSink
) -> None:
    base, proc = running
    c = httpx.Client(base_url=base, headers={"Authorization": f"token {TOKEN}"}, timeout=5)
    assert c.get("/v1/locations/beacons").status_code == 503  # --error-rate beacons=1
    assert c.post("/v1/app", json={"name": "g", "is_active": True, "image": ""}).status_code == 200
    version = {"name": "v1", "docker_repository": "r", "docker_image": "i", "docker_tag": "1", "req_cpu": 256,
               "req_memory": 256, "session_config": {"kind": "Seat", "sockets": 2}}  # fmt: skip
    assert c.post("/v1/app/g/version", json=version).status_code == 200
    hook = f"{webhook_sink.url}/deployments?token={WEBHOOK_SECRET}"
    rid = c.post("/v1/deploy", json={"app_name": "g", "webhook_url": hook}).json()["request_id"]
    webhook_sink.wait_for(1, 10)  # READY after --boot-s 0.2
    assert c.get(f"/v1/status/{rid}").json()["current_status"] == "Status.READY"
    webhook_sink.status = 500
    c.post(
        "/v1/telemetry/active-deployments",
        json={"deployments": [rid], "ips": ["8.8.8.8"], "webhook_url": hook},
    )
    webhook_sink.wait_for(2, 10)
    c.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert "sim_start" in out
    assert TOKEN not in out and WEBHOOK_SECRET not in out


def test_fleet_sim_refuses_to_start_without_a_token() -> None:
    proc = fleet_sim("--port", str(free_port()), token="")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "CODEMA_API_TOKEN" in out


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--error-rate", "deploy=7"], "error_rate.deploy"), (["--outage", "Atlantis"], "outages"),
     (["--boot-s", "-1"], "--boot-s")],
)  # fmt: skip
def test_fleet_sim_names_a_bad_flag(flags: list[str], named: str) -> None:
    proc = fleet_sim("--port", str(free_port()), *flags)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and named in out


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = fleet_sim("--host", "127.0.0.1", "--port", str(port))
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"fleet sim: cannot listen on 127.0.0.1:{port}" in out and "Traceback" not in out


def test_the_port_answers_before_the_simulator_has_loaded() -> None:
    """The port is opened before the simulator loads: a request made as soon as it accepts may
    wait in the backlog, and is answered (a newcomer's smoke run, which calls the simulator the
    moment `fleet web` answers, was once refused)."""
    port = free_port()
    proc = fleet_sim("--host", "127.0.0.1", "--port", str(port))
    try:
        wait_for(lambda: _accepts(port), 15, "the port to accept connections")
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/locations", headers={"Authorization": f"token {TOKEN}"}, timeout=15
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
