"""The simulator's world model in virtual time: deployment lifecycle, stops, platform-side endings."""

from __future__ import annotations

import pytest

from codema.sim.records import DeploySpec, Gone, NotFound, SessionSpec, Status, Unprocessable
from codema.sim.world import World
from tests.fixtures.sim import VirtualWorld, make_virtual_world

UK_IP = "81.2.69.160"


def test_phases_advance_in_order_over_the_boot_time(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    seen = [(0.0, d.status)]
    for second in range(1, 32):
        vworld.move(1)
        if d.status != seen[-1][1]:
            seen.append((float(second), d.status))
    # boot 30 s: SEEKING at 10 % (3 s), SEEKED 25 % (7.5 -> seen at 8), SCANNING 40 % (12),
    # DEPLOYING 60 % (18), READY at 30 s
    assert seen == [
        (0.0, Status.INITIALIZING),
        (3.0, Status.SEEKING),
        (8.0, Status.SEEKED),
        (12.0, Status.SCANNING),
        (18.0, Status.DEPLOYING),
        (30.0, Status.READY),
    ]
    assert d.sockets == 4 and d.used == 0


def test_a_jump_applies_each_transition_at_its_own_time(vworld: VirtualWorld) -> None:
    vworld.setup_app(empty_ttl=5)
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    vworld.move(3600)
    # READY at 30 s, empty for 5 minutes -> TERMINATING at 330 s, TERMINATED 2 s later
    assert d.ready_at == d.created + 30
    assert d.status is Status.TERMINATED and d.end_reason == "empty_ttl"
    assert d.ended_at == d.created + 30 + 300 + 2


def test_next_due_lets_a_replay_jump_from_event_to_event(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    assert vworld.world.next_due() == pytest.approx(d.created + 3.0)


def test_same_seed_same_world() -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        v = make_virtual_world(seed=seed)
        v.setup_app()
        return [(v.world.deploy(DeploySpec("game", "v1")).request_id, "") for _ in range(3)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_ready_posts_the_deployment_webhook_with_the_status_body(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1", webhook_url="http://hooks/deployments?token=s"))
    vworld.move(29)
    assert vworld.world.drain_outbox() == []
    vworld.move(1)
    [hook] = vworld.world.drain_outbox()
    assert (hook.kind, hook.url, hook.subject) == (
        "deployment",
        "http://hooks/deployments?token=s",
        d.request_id,
    )
    assert hook.body["current_status"] == "Status.READY" and hook.body["running"] is True
    assert hook.body["sockets"] == 4 and hook.body["sockets_usage"] == 0


def test_stop_of_a_ready_deployment_terminates_after_stop_time(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    vworld.move(30)
    result = vworld.world.stop(d.request_id)
    assert not result.accepted_later and d.status is Status.TERMINATING
    vworld.move(2)
    assert d.status is Status.TERMINATED and d.end_reason == "stop"
    assert d not in vworld.world.list_deployments()
    with pytest.raises(Gone):
        vworld.world.stop(d.request_id)


def test_stop_before_ready_is_accepted_and_carried_out_at_ready(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    vworld.move(5)
    assert vworld.world.stop(d.request_id).accepted_later
    assert d.status is Status.SEEKING  # nothing happens before READY
    vworld.move(25)
    assert d.status is Status.TERMINATING
    vworld.move(2)
    assert d.status is Status.TERMINATED


def test_stop_of_unknown_deployment_is_not_found(vworld: VirtualWorld) -> None:
    with pytest.raises(NotFound):
        vworld.world.stop("000000000000")


def test_failed_deploy_ends_in_error_with_webhook_and_stop_is_gone() -> None:
    v = make_virtual_world(faults={"fail_deploys": 1.0})
    v.setup_app()
    d = v.world.deploy(DeploySpec("game", "v1", webhook_url="http://hooks/d"))
    assert v.world.stop(d.request_id).accepted_later
    v.move(30)
    assert d.status is Status.ERROR and d.error_detail
    [hook] = v.world.drain_outbox()
    assert hook.body["current_status"] == "Status.ERROR" and hook.body["error"] is True
    with pytest.raises(Gone):
        v.world.stop(d.request_id)


def test_stuck_deploy_stays_deploying_unless_the_version_has_time_to_deploy() -> None:
    v = make_virtual_world(faults={"stuck_deploys": 1.0})
    v.setup_app()
    v.setup_app(version="v2", time_to_deploy=90)
    forever = v.world.deploy(DeploySpec("game", "v1"))
    bounded = v.world.deploy(DeploySpec("game", "v2"))
    v.move(60)
    assert forever.status is Status.DEPLOYING and bounded.status is Status.DEPLOYING
    v.move(30)
    assert bounded.status is Status.ERROR
    v.move(3600)
    assert forever.status is Status.DEPLOYING


def test_empty_ttl_counts_from_the_last_session(vworld: VirtualWorld) -> None:
    vworld.setup_app(empty_ttl=2)
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    vworld.move(30 + 100)
    s = vworld.world.create_session(
        SessionSpec("game", "v1", ip_list=(UK_IP,), deployment_request_id=d.request_id)
    )
    vworld.move(600)  # a session is there: no ending however long
    assert d.status is Status.READY
    vworld.world.delete_session(s.session_id)
    vworld.move(119)
    assert d.status is Status.READY
    vworld.move(1)  # 2 minutes without a session
    assert d.status is Status.TERMINATING and d.end_reason == "empty_ttl"


def test_max_duration_ends_the_deployment_even_with_players(vworld: VirtualWorld) -> None:
    vworld.setup_app(max_duration=10)
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    vworld.move(30)
    s = vworld.world.create_session(
        SessionSpec("game", "v1", ip_list=(UK_IP,), deployment_request_id=d.request_id)
    )
    vworld.move(570 - 1)
    assert d.status is Status.READY
    vworld.move(1)  # 600 s after the deploy
    assert d.status is Status.TERMINATING and d.end_reason == "max_duration"
    vworld.move(2)
    assert d.status is Status.TERMINATED
    with pytest.raises(NotFound):  # its sessions ended with it
        vworld.world.session(s.session_id)
    with pytest.raises(Gone):
        vworld.world.delete_session(s.session_id)


def test_self_stop_needs_the_injected_token_and_emits_no_webhook(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1", webhook_url="http://hooks/d"))
    vworld.move(30)
    vworld.world.drain_outbox()
    from codema.sim.records import Forbidden

    with pytest.raises(Forbidden):
        vworld.world.self_stop(d.request_id, str(d.access_point_id), "wrong")
    result = vworld.world.self_stop(d.request_id, str(d.access_point_id), d.delete_token)
    assert not result.accepted_later
    vworld.move(2)
    assert d.status is Status.TERMINATED and d.end_reason == "self_stop"
    assert vworld.world.drain_outbox() == []


def test_bulk_stop_by_tag(vworld: VirtualWorld) -> None:
    from codema.sim.records import LocationFilter

    vworld.setup_app()
    a = vworld.world.deploy(DeploySpec("game", "v1", tags=("fleet-a",)))
    b = vworld.world.deploy(DeploySpec("game", "v1", tags=("fleet-b",)))
    vworld.move(30)
    stopped = vworld.world.bulk_stop([LocationFilter("deployment_tags", ("fleet-a",), "any")])
    assert stopped == [a.request_id]
    assert a.status is Status.TERMINATING and b.status is Status.READY


def test_outage_refuses_new_deployments_there_and_ends_running_ones(vworld: VirtualWorld) -> None:
    from codema.sim.records import LocationFilter

    vworld.setup_app()
    london = (LocationFilter("city", ("London",), "any"),)
    ready = vworld.world.deploy(DeploySpec("game", "v1", filters=london))
    vworld.move(30)
    starting = vworld.world.deploy(DeploySpec("game", "v1", filters=london, webhook_url="http://h/d"))
    vworld.world.set_faults(vworld.world.faults.updated({"outages": ["London"]}))
    assert ready.status is Status.TERMINATED and ready.end_reason == "outage"
    assert starting.status is Status.ERROR
    with pytest.raises(Unprocessable):
        vworld.world.deploy(DeploySpec("game", "v1", filters=london))
    elsewhere = vworld.world.deploy(DeploySpec("game", "v1", ip_list=(UK_IP,)))
    assert elsewhere.location.city != "London"


def test_snapshot_is_the_ground_truth(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1", tags=("t",)))
    vworld.move(30)
    vworld.world.create_session(SessionSpec("game", "v1", ip_list=(UK_IP, "8.8.8.8")))
    truth = vworld.world.snapshot()
    [dep] = truth["deployments"]
    assert dep["request_id"] == d.request_id and dep["status"] == "Status.READY"
    assert dep["sockets_usage"] == 2 and len(dep["sessions"]) == 1 and dep["tags"] == ["t"]
    assert dep["location"]["city"] and dep["delete_url"].endswith(str(d.access_point_id))
    assert truth["sessions"][0]["size"] == 2


def test_world_model_imports_no_clock_network_or_asyncio() -> None:
    import ast
    import inspect

    import codema.sim.apps
    import codema.sim.deployments
    import codema.sim.placement
    import codema.sim.sessions
    import codema.sim.state
    import codema.sim.telemetry
    import codema.sim.world

    modules = [codema.sim.apps, codema.sim.deployments, codema.sim.placement, codema.sim.sessions,
               codema.sim.state, codema.sim.telemetry, codema.sim.world]  # fmt: skip
    banned = {"time", "asyncio", "httpx", "starlette", "uvicorn", "socket"}
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & banned, f"{module.__name__} imports {names & banned}"
    assert World.__doc__


def test_the_documented_virtual_time_example_runs() -> None:
    import random
    import textwrap

    import codema.sim.world as module
    from codema.sim.records import LocationFilter
    from codema.sim.state import WorldConfig

    doc = module.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n", 1)[1].split("\nContract:", 1)[0])
    scope = {"World": World, "WorldConfig": WorldConfig, "random": random, "DeploySpec": DeploySpec,
             "SessionSpec": SessionSpec, "LocationFilter": LocationFilter}  # fmt: skip
    exec(compile(example, "world-docstring", "exec"), scope)
    world, d = scope["world"], scope["d"]
    assert d.status is Status.READY and d.location.continent == "Europe"
    scope["t"][0] = 31.0 + 5 * 60
    world.advance()
    assert d.status is Status.TERMINATING and d.end_reason == "empty_ttl"
