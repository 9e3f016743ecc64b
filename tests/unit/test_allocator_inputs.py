"""Player addresses, networks, request bodies and the capacity outlook (pure parts)."""

from __future__ import annotations

import pytest

from allocator.ips import BadAddress, check_all, network_of, player_ip
from allocator.outlook import Outcome, PolicyRoom, outlook
from allocator.schemas import BadField, SessionCreateIn


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("127.0.0.1", "private"),  # loopback is in the private ranges too
        ("169.254.1.1", "private"),
        ("100.64.0.1", "reserved"),  # shared address space (CGNAT)
        ("192.0.2.1", "private"),  # documentation
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "private"),
        ("240.0.0.1", "private"),
        ("2001:db8::1", "private"),
        ("fe80::1", "private"),
        ("::1", "private"),
        ("not-an-ip", "not an IP address"),
        ("1.2.3", "not an IP address"),
        ("", "not an IP address"),
    ],
)
def test_refused_addresses_name_field_and_address(address: str, why: str) -> None:
    with pytest.raises(BadAddress) as err:
        check_all(["81.2.69.160", address], "ip_list")
    assert str(err.value).startswith("ip_list[1]: ")
    assert why in str(err.value)
    assert err.value.field == "ip_list[1]"


@pytest.mark.parametrize("address", ["81.2.69.160", "8.8.8.8", "2a00:1450:4009::1", "::ffff:81.2.69.160"])
def test_public_addresses_accepted(address: str) -> None:
    player_ip(address, "ip_list[0]")


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("81.2.69.160", "81.2.69.0/24"),
        ("81.2.69.161", "81.2.69.0/24"),
        ("2a00:1450:4009:81a::200e", "2a00:1450:4009::/48"),
    ],
)
def test_networks(address: str, network: str) -> None:
    assert network_of(address) == network


def test_non_string_address() -> None:
    with pytest.raises(BadAddress, match=r"ip_list\[0\]"):
        check_all([42], "ip_list")


def test_body_needs_players() -> None:
    body = SessionCreateIn.model_validate({"app_name": "a", "version_name": "v"})
    with pytest.raises(BadField, match=r"^ip_list: at least one player"):
        body.checked_ips()


def test_geo_ip_address_named() -> None:
    body = SessionCreateIn.model_validate(
        {
            "app_name": "a",
            "version_name": "v",
            "geo_ip_list": [{"ip": "10.0.0.1", "latitude": 1, "longitude": 2}],
        }
    )
    with pytest.raises(BadAddress, match=r"^geo_ip_list\[0\]\.ip: '10.0.0.1' is a private address"):
        body.checked_ips()


ROOM = PolicyRoom("f", "p", maximum=3, live=1, open_sockets=0)


@pytest.mark.parametrize(
    ("name", "rooms", "sockets", "waiting", "size", "outcome", "headroom"),
    [
        ("no policy links the version", [], 4, 0, 1, Outcome.NO_POLICY, 0),
        ("room for 2 more deployments of 4 sockets", [ROOM], 4, 0, 1, Outcome.WAIT, 8),  # (3 - 1) * 4
        ("waiting demand already takes the headroom", [ROOM], 4, 8, 1, Outcome.AT_MAXIMUM, 8),  # 8 - 8 < 1
        ("last socket of headroom", [ROOM], 4, 7, 1, Outcome.WAIT, 8),  # 8 - 7 >= 1
        ("at maximum, nothing starting", [PolicyRoom("f", "p", 2, 2, 0)], 4, 0, 1, Outcome.AT_MAXIMUM, 0),
        ("at maximum but one starting", [PolicyRoom("f", "p", 2, 2, 4)], 4, 3, 1, Outcome.WAIT, 4),  # 4 - 3
        ("over maximum counts as none", [PolicyRoom("f", "p", 2, 5, 0)], 4, 0, 1, Outcome.AT_MAXIMUM, 0),
        ("two policies add up", [ROOM, PolicyRoom("f", "q", 1, 0, 0)], 4, 11, 1, Outcome.WAIT, 12),
        ("unknown socket count, room under maximum", [ROOM], None, 50, 1, Outcome.WAIT, None),
        (
            "unknown socket count, at maximum",
            [PolicyRoom("f", "p", 1, 1, 0)],
            None,
            0,
            1,
            Outcome.AT_MAXIMUM,
            None,
        ),
    ],
)
def test_outlook(
    name: str,
    rooms: list[PolicyRoom],
    sockets: int | None,
    waiting: int,
    size: int,
    outcome: Outcome,
    headroom: int | None,
) -> None:
    result = outlook(rooms, sockets, waiting, size)
    assert result.outcome is outcome, name
    assert result.headroom == headroom, name
    assert result.can_wait == (outcome is Outcome.WAIT)
