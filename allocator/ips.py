"""Player addresses: which ones are acceptable and which network each belongs to. Pure.

Only globally routable unicast addresses can be located or measured; private, loopback,
link-local, multicast, shared (CGNAT), documentation and other reserved ranges are refused with a
message that names the field and the address. Telemetry and IP lookups are cached per network:
a /24 for IPv4 and a /48 for IPv6, the usual size of one site's allocation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
V4_PREFIX = 24
V6_PREFIX = 48
MAX_IP_TEXT = 64


class BadAddress(ValueError):
    """An address that cannot be a player's; `field` is the request field it came from."""

    def __init__(self, field: str, address: str, why: str) -> None:
        super().__init__(f"{field}: {address!r} {why}")
        self.field = field
        self.address = address


def _kind_of_refusal(ip: IpAddress) -> str:
    if ip.is_private:
        return "is a private address"
    if ip.is_loopback:
        return "is a loopback address"
    if ip.is_link_local:
        return "is a link-local address"
    if ip.is_multicast:
        return "is a multicast address"
    if ip.is_unspecified:
        return "is the unspecified address"
    return "is a reserved address"


def player_ip(text: object, field: str) -> IpAddress:
    """The parsed address, or BadAddress naming the field when it is malformed or not routable."""
    if not isinstance(text, str) or not text or len(text) > MAX_IP_TEXT:
        raise BadAddress(field, str(text)[:MAX_IP_TEXT], "is not an IP address")
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise BadAddress(field, text, "is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise BadAddress(field, text, _kind_of_refusal(ip))
    return ip


def check_all(texts: Iterable[object], field: str) -> list[str]:
    """Every address checked (`field[i]` named on refusal), returned in canonical text form."""
    return [str(player_ip(t, f"{field}[{i}]")) for i, t in enumerate(texts)]


def network_of(ip: str) -> str:
    """`81.2.69.0/24` or `2001:db8:1::/48`: the cache key of a player's network. `ip` is in the
    canonical form `check_all` returns (the IPv4 case is on every placement's path: string work)."""
    if ":" not in ip:
        return ip.rpartition(".")[0] + ".0/24"
    addr = ipaddress.ip_address(ip)
    prefix = V4_PREFIX if addr.version == 4 else V6_PREFIX
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
