"""Telemetry ranking, IP geolocation and deployment placement in the world model."""

from __future__ import annotations

import random

import pytest

from codema.sim.geo import LOCATIONS, Geolocator, Point, distance_km, rtt_ms
from codema.sim.placement import choose_location, matches_filters
from codema.sim.records import BadRequest, DeploySpec, LocationFilter, NotFound, Status, Unprocessable
from tests.fixtures.sim import VirtualWorld

UK_IP, JP_IP, BR_IP = "81.2.69.160", "133.242.0.3", "200.147.67.142"


def deploy_in(vworld: VirtualWorld, city: str) -> str:
    return vworld.world.deploy(
        DeploySpec("game", "v1", filters=(LocationFilter("city", (city,)),))
    ).request_id


def test_telemetry_is_partial_while_measuring_then_ranks_best_first(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    tokyo, london, new_york = (deploy_in(vworld, c) for c in ("Tokyo", "London", "New York"))
    starting = deploy_in(vworld, "Paris")
    vworld.move(30)
    vworld.world.stop(starting)  # TERMINATING: never reports
    rec = vworld.world.request_telemetry([tokyo, london, new_york, starting], [UK_IP], "http://h/t")
    first = vworld.world.telemetry_result(rec.retrieval_key)
    assert first.partial and len(first.ranking) < 3
    vworld.move(0.5)
    middle = vworld.world.telemetry_result(rec.retrieval_key)
    assert set(first.ranking) <= set(middle.ranking)
    vworld.move(0.5)
    done = vworld.world.telemetry_result(rec.retrieval_key)
    # from the UK: London (~100 km), New York (~5,500 km), Tokyo (~9,500 km)
    assert not done.partial and done.ranking == [london, new_york, tokyo]
    [hook] = [h for h in vworld.world.drain_outbox() if h.kind == "telemetry"]
    assert hook.body == {
        "retrieval_key": rec.retrieval_key,
        "scores": [{"request_id": r} for r in (london, new_york, tokyo)],
        "partial_result": False,
    }


def test_telemetry_ranking_depends_on_the_players(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    tokyo, london = deploy_in(vworld, "Tokyo"), deploy_in(vworld, "London")
    vworld.move(30)
    rec = vworld.world.request_telemetry([london, tokyo], [JP_IP])
    vworld.move(1)
    assert vworld.world.telemetry_result(rec.retrieval_key).ranking == [tokyo, london]


def test_telemetry_key_expires_and_bad_requests_are_refused(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    rid = deploy_in(vworld, "London")
    rec = vworld.world.request_telemetry([rid], [UK_IP])
    vworld.move(1 + 300)
    with pytest.raises(NotFound):
        vworld.world.telemetry_result(rec.retrieval_key)
    with pytest.raises(BadRequest, match="ips"):
        vworld.world.request_telemetry([rid], [])
    with pytest.raises(BadRequest, match=r"ips\[0\]"):
        vworld.world.request_telemetry([rid], ["999.1.1.1"])
    with pytest.raises(Unprocessable, match="deployments"):
        vworld.world.request_telemetry(["000000000000"], [UK_IP])


@pytest.mark.parametrize(
    ("ip", "country", "continent"),
    [(UK_IP, "GB", "EU"), (JP_IP, "JP", "AS"), (BR_IP, "BR", "SA"), ("8.8.8.8", "US", "NA")],
)
def test_ip_geolocation_from_the_packaged_databases(ip: str, country: str, continent: str) -> None:
    found = Geolocator().lookup(ip)
    assert found is not None and (found.country_code, found.continent_code) == (country, continent)


def test_private_and_invalid_addresses_have_no_location() -> None:
    assert Geolocator().lookup("10.0.0.1") is None
    assert Geolocator().lookup("not-an-ip") is None


def test_uk_players_point_is_in_england() -> None:
    found = Geolocator().lookup(UK_IP)
    assert found is not None
    assert distance_km(found.point, Point(51.5074, -0.1278)) < 250  # population centre of Great Britain


def test_rtt_estimate_grows_with_distance() -> None:
    london, paris, tokyo = Point(51.5, -0.13), Point(48.86, 2.35), Point(35.68, 139.65)
    assert rtt_ms(london, london) == pytest.approx(4.0)
    assert rtt_ms(london, paris) < rtt_ms(london, tokyo)
    # ~9,560 km London-Tokyo: 4 ms + 1.5 x 9,560 / 100 = ~147 ms
    assert rtt_ms(london, tokyo) == pytest.approx(147, abs=3)


def test_locations_are_real_cities_with_tags() -> None:
    assert len(LOCATIONS) >= 20
    cities = {loc.city: loc for loc in LOCATIONS}
    assert (
        distance_km(Point(cities["Montreal"].latitude, cities["Montreal"].longitude), Point(45.5, -73.57)) < 5
    )
    assert all(all("=" in t for t in loc.tags) for loc in LOCATIONS)


EUROPE = {"London", "Paris", "Madrid", "Frankfurt", "Amsterdam", "Warsaw", "Stockholm"}
FAST_METAL = (LocationFilter("location_tags", ("cpu=high-clock", "infra=bare-metal"), "all"),)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([LocationFilter("continent", ("Europe",), "any")], EUROPE),
        ([LocationFilter("country", ("Canada", "Japan"), "any")], {"Montreal", "Toronto", "Tokyo"}),
        (
            [*FAST_METAL, LocationFilter("continent", ("North America",))],
            {"Montreal", "Ashburn", "Los Angeles"},
        ),
        ([LocationFilter("region", ("us-east",)), LocationFilter("city", ("New York",), "not")], {"Ashburn"}),
        ([LocationFilter("city", ("London", "Paris"), "all")], set()),
        ([LocationFilter("administrative_division", ("quebec",))], {"Montreal"}),
    ],
)
def test_deploy_filters(filters: list[LocationFilter], expected: set[str]) -> None:
    assert {loc.city for loc in LOCATIONS if matches_filters(loc, filters)} == expected


def test_placement_nearest_to_players_or_centroid(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    assert vworld.world.deploy(DeploySpec("game", "v1", ip_list=(JP_IP,))).location.city == "Tokyo"
    assert vworld.world.deploy(DeploySpec("game", "v1", ip_list=(BR_IP,))).location.city == "Sao Paulo"
    near_seattle = DeploySpec("game", "v1", ip_list=(UK_IP,), location=Point(47.0, -122.0))
    assert vworld.world.deploy(near_seattle).location.city == "Seattle"
    europe_only = DeploySpec(
        "game", "v1", ip_list=(JP_IP,), filters=(LocationFilter("continent", ("Europe",)),)
    )
    assert vworld.world.deploy(europe_only).location.continent == "Europe"


def test_placement_without_players_is_random_but_seeded() -> None:
    picks = {choose_location(LOCATIONS, [], random.Random(seed)).city for seed in range(20)}
    assert len(picks) > 3
    assert choose_location(LOCATIONS, [], random.Random(3)) == choose_location(
        LOCATIONS, [], random.Random(3)
    )


def test_deploy_refusals_name_the_field(vworld: VirtualWorld) -> None:
    vworld.setup_app()
    with pytest.raises(BadRequest, match=r"filters\[0\].field"):
        vworld.world.deploy(DeploySpec("game", "v1", filters=(LocationFilter("planet", ("Mars",)),)))
    with pytest.raises(BadRequest, match=r"filters\[0\].filter_type"):
        vworld.world.deploy(DeploySpec("game", "v1", filters=(LocationFilter("city", ("Paris",), "some"),)))
    with pytest.raises(Unprocessable):
        vworld.world.deploy(DeploySpec("game", "v1", filters=(LocationFilter("city", ("Atlantis",)),)))
    with pytest.raises(NotFound):
        vworld.world.deploy(DeploySpec("game", "v9"))
    assert all(d.status is Status.INITIALIZING for d in vworld.world.list_deployments())
