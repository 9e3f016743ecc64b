"""The declarative config file: every problem reported with its place, nothing half-parsed."""

from __future__ import annotations

import pytest
import yaml

from autoscaler.config import ConfigError, parse_config

GOOD = """
fleets:
  - name: demo
    enabled: true
    apps: [{app: game, version: v1}]
    policies:
      - {name: eu, enabled: true, type: Location, minimum: 1, maximum: 6, threshold: 0.8,
         data: {filters: [{field: continent, values: [Europe], filter_type: any}]}, idle_s: 120}
      - {name: mtl, enabled: false, type: Coordinates, minimum: 1, maximum: 2, threshold: 0.9,
         data: {latitude: 45.5, longitude: -73.6}}
  - name: quiet
"""


def test_a_good_file() -> None:
    parsed = parse_config(yaml.safe_load(GOOD))
    (demo, policies, links), (quiet, none, no_links) = parsed.fleets
    assert (demo.name, demo.enabled, quiet.enabled) == ("demo", True, False)
    assert [p.name for p in policies] == ["eu", "mtl"] and policies[0].idle_s == 120
    assert [(x.app, x.version) for x in links] == [("game", "v1")]
    assert none == [] and no_links == []


def test_empty_file_is_no_fleets() -> None:
    assert parse_config(None).fleets == []


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("fleets: [{enabled: true}]", ["fleets[0].name: Field required"]),
        ("flets: []", ["flets: Extra inputs are not permitted"]),
        (
            "fleets: [{name: a, policies: [{name: p, enabled: true, type: Location, minimum: 0, maximum: 1,"
            " threshold: 2, data: {filters: [{field: city, values: [X], filter_type: any}]}}]}]",
            [
                "fleets[0].policies[0].minimum: Input should be greater than or equal to 1",
                "fleets[0].policies[0].threshold: Input should be less than or equal to 1",
            ],
        ),
        (
            "fleets: [{name: a}, {name: a}]",
            ["fleets[1].name: fleet 'a' appears twice"],
        ),
        (
            "fleets: [{name: a, apps: [{app: g}]}]",
            ["fleets[0].apps[0].version: Field required"],
        ),
    ],
)
def test_every_problem_is_reported_with_its_place(text: str, problems: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_load(text))
    assert err.value.problems == problems
