"""Where the players are, as the allocator tells the scaler (the `origin` of a waiting session)."""

from __future__ import annotations

import pytest

from allocator.insight import origin_of
from allocator.placement import Point
from codema.schemas import IpLookup
from fleet.store.placement import GeoFact


def test_origin_names_the_country_as_the_platform_spells_it() -> None:
    facts = [
        GeoFact(45.5, -73.6, "CA", "North America", "Canada"),
        GeoFact(43.7, -79.4, "CA", "North America", "Canada"),
        GeoFact(40.7, -74.0, "US", "North America", "United States"),
    ]
    origin = origin_of(facts, [Point(f.latitude, f.longitude) for f in facts])  # type: ignore[arg-type]
    assert origin["country"] == "CA" and origin["country_name"] == "Canada"
    assert origin["continent"] == "North America"
    assert 40 < origin["latitude"] < 46 and -80 < origin["longitude"] < -73


def test_ip_lookup_keeps_the_country_name() -> None:
    body = {
        "type": "ipv4",
        "ip_address": "24.114.0.1",
        "location": {
            "continent": {"code": "NA", "name": "North America"},
            "country": {"code": "CA", "name": "Canada"},
            "latitude": 45.4,
            "longitude": -75.7,
        },
    }
    found = IpLookup.model_validate(body)
    assert (found.country_code, found.country_name, found.continent) == ("CA", "Canada", "North America")
    assert found.latitude == pytest.approx(45.4)
