"""Sessions in the world model: Seat and Match socket accounting, linking, users, webhooks."""

from __future__ import annotations

import pytest

from codema.sim.records import (
    BadRequest,
    DeploySpec,
    Gone,
    LocationFilter,
    NotFound,
    Selector,
    SessionSpec,
    SessionStatus,
    Status,
    Unprocessable,
)
from tests.fixtures.sim import VirtualWorld

UK = ("81.2.69.160",)
PARTY = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9")


def ready(vworld: VirtualWorld, **spec: object) -> str:
    d = vworld.world.deploy(DeploySpec("game", "v1", **spec))  # type: ignore[arg-type]
    vworld.move(30)
    assert d.status is Status.READY
    return d.request_id


@pytest.mark.parametrize(
    ("kind", "sessions", "usage_after_create", "usage_after_delete_last"),
    [
        # Seat, 10 sockets: a solo player + a party of 4 use 5; deleting the party leaves 1
        ("Seat", [UK, PARTY], 5, 1),
        # Match, 5 sockets: three matches of any size use 3; deleting one leaves 2
        ("Match", [UK, PARTY, PARTY[:2]], 3, 2),
    ],
)
def test_socket_accounting(
    vworld: VirtualWorld,
    kind: str,
    sessions: list[tuple[str, ...]],
    usage_after_create: int,
    usage_after_delete_last: int,
) -> None:
    vworld.setup_app(kind=kind, sockets=10 if kind == "Seat" else 5)
    rid = ready(vworld)
    made = [vworld.world.create_session(SessionSpec("game", "v1", ip_list=ips)) for ips in sessions]
    assert all(s.status is SessionStatus.READY and s.deployment_id == rid for s in made)
    d = vworld.world.deployment(rid)
    assert d.used == usage_after_create
    vworld.world.delete_session(made[-1].session_id)
    assert d.used == usage_after_delete_last


def test_usage_is_zero_while_starting(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    body = vworld.world.status_body(d)
    assert body["sockets_usage"] == 0 and body["sockets"] == 4


def test_named_deployment_without_room_makes_the_session_unprocessable(vworld: VirtualWorld) -> None:
    vworld.setup_app(sockets=2)
    rid = ready(vworld)
    first = vworld.world.create_session(
        SessionSpec("game", "v1", ip_list=PARTY[:2], deployment_request_id=rid)
    )
    second = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK, deployment_request_id=rid))
    assert first.status is SessionStatus.READY
    assert (
        second.status is SessionStatus.UNPROCESSABLE
        and not second.linked
        and "free sockets" in (second.error or "")
    )
    assert vworld.world.deployment(rid).used == 2


def test_named_deployment_still_starting_is_unprocessable(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    d = vworld.world.deploy(DeploySpec("game", "v1"))
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK, deployment_request_id=d.request_id))
    assert s.status is SessionStatus.UNPROCESSABLE


def test_without_a_fitting_deployment_and_autodeploy_off_unprocessable(vworld: VirtualWorld) -> None:
    vworld.setup_app(sockets=1)
    ready(vworld)
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=PARTY[:2]))
    assert s.status is SessionStatus.UNPROCESSABLE


def test_autodeploy_waits_for_a_new_deployment_then_links(vworld: VirtualWorld) -> None:
    vworld.setup_app(autodeploy=True)
    s = vworld.world.create_session(
        SessionSpec("game", "v1", ip_list=UK, selectors=(Selector("ranked"),), webhook_url="http://h/s")
    )
    assert s.status is SessionStatus.WAITING and not s.linked
    d = vworld.world.deployment(s.deployment_id or "")
    assert d.tags == ["ranked"] and d.location.country == "United Kingdom"
    vworld.move(30)
    assert s.status is SessionStatus.READY and d.used == 1
    [hook] = [h for h in vworld.world.drain_outbox() if h.kind == "session"]
    assert hook.body["status"] == "Status.READY" and hook.body["deployment"]["request_id"] == d.request_id


def test_session_waiting_for_a_failed_deployment_errors_with_webhook() -> None:
    from tests.fixtures.sim import make_virtual_world

    v = make_virtual_world(faults={"fail_deploys": 1.0})
    v.setup_app(autodeploy=True)
    s = v.world.create_session(SessionSpec("game", "v1", ip_list=UK, webhook_url="http://h/s"))
    v.move(30)
    assert s.status is SessionStatus.ERROR
    [hook] = [h for h in v.world.drain_outbox() if h.kind == "session"]
    assert hook.body["status"] == "Status.ERROR" and hook.body["linked"] is False


def test_session_webhooks_on_linked_and_unprocessable(vworld: VirtualWorld) -> None:
    vworld.setup_app(sockets=1)
    ready(vworld)
    vworld.world.drain_outbox()
    ok = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK, webhook_url="http://h/s?token=x"))
    refused = vworld.world.create_session(
        SessionSpec("game", "v1", ip_list=UK, webhook_url="http://h/s?token=x")
    )
    hooks = vworld.world.drain_outbox()
    assert [(h.subject, h.body["status"]) for h in hooks] == [
        (ok.session_id, "Status.READY"),
        (refused.session_id, "Status.UNPROCESSABLE"),
    ]
    assert hooks[0].body["linked"] is True and hooks[0].body["kind"] == "SEATS"


def test_selectors_and_filters_restrict_candidates(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    plain = ready(vworld, ip_list=UK)
    tagged = ready(vworld, tags=("ranked",), filters=(LocationFilter("city", ("Tokyo",)),))
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK, selectors=(Selector("ranked"),)))
    assert s.deployment_id == tagged
    in_europe = SessionSpec("game", "v1", ip_list=UK, filters=(LocationFilter("continent", ("Europe",)),))
    assert vworld.world.create_session(in_europe).deployment_id == plain


def test_nearest_deployment_wins(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    tokyo = ready(vworld, filters=(LocationFilter("city", ("Tokyo",)),))
    london = ready(vworld, filters=(LocationFilter("city", ("London",)),))
    assert vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK)).deployment_id == london
    japan = SessionSpec("game", "v1", ip_list=("133.242.0.3",))  # a Japanese address (geoip2fast: JP)
    assert vworld.world.create_session(japan).deployment_id == tokyo


def test_users_put_beyond_free_sockets_is_unprocessable_and_delete_frees(vworld: VirtualWorld) -> None:
    vworld.setup_app(sockets=3)
    rid = ready(vworld)
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK))
    vworld.world.add_users(s.session_id, list(PARTY[:2]))
    assert vworld.world.deployment(rid).used == 3 and len(s.users) == 3
    with pytest.raises(Unprocessable, match="ip_list"):
        vworld.world.add_users(s.session_id, [PARTY[2]])
    vworld.world.add_users(s.session_id, [PARTY[0]])  # already in: no socket needed
    vworld.world.remove_users(s.session_id, [PARTY[0], PARTY[1]])
    assert vworld.world.deployment(rid).used == 1 and [u.ip for u in s.users] == list(UK)


def test_match_users_do_not_change_usage(vworld: VirtualWorld) -> None:
    vworld.setup_app(kind="Match", sockets=1)
    rid = ready(vworld)
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK))
    vworld.world.add_users(s.session_id, list(PARTY))
    assert vworld.world.deployment(rid).used == 1 and len(s.users) == 5


def test_delete_twice_is_gone_and_unknown_is_not_found(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    ready(vworld)
    s = vworld.world.create_session(SessionSpec("game", "v1", ip_list=UK))
    vworld.world.delete_session(s.session_id)
    with pytest.raises(Gone):
        vworld.world.delete_session(s.session_id)
    with pytest.raises(NotFound):
        vworld.world.session(s.session_id)
    with pytest.raises(NotFound):
        vworld.world.delete_session("nope-s")


def test_bad_input_names_the_field(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    vworld.setup_app(version="plain", kind="Default")
    with pytest.raises(BadRequest, match=r"ip_list\[1\]"):
        vworld.world.create_session(SessionSpec("game", "v1", ip_list=("1.2.3.4", "not-an-ip")))
    with pytest.raises(BadRequest, match="version_name"):
        vworld.world.create_session(SessionSpec("game", "plain", ip_list=UK))
    with pytest.raises(NotFound):
        vworld.world.create_session(SessionSpec("nogame", ip_list=UK))
