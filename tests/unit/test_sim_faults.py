"""Fault settings and the pure decisions they imply (per-request verdicts, webhook delivery plans)."""

from __future__ import annotations

import argparse
import random

import pytest

from codema.sim.faults import FaultError, Faults, RateLimiter, Verdict, decide, plan_delivery
from codema.sim.options import add_sim_arguments, options_from_args


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_build_options() -> None:
    opts = options_from_args(
        parse_flags("--boot-s", "0.5", "--error-rate", "deploy=0.2,status=0.1", "--rate-limit", "deploy=40",
                    "--outage", "London", "--outage", "Paris,Tokyo", "--webhook-loss", "0.3", "--seed", "9")
    )  # fmt: skip
    assert opts.world.boot_s == 0.5 and opts.seed == 9
    assert opts.faults.error_rate == {"deploy": 0.2, "status": 0.1}
    assert opts.faults.rate_limit == {"deploy": 40.0}
    assert opts.faults.outages == ("London", "Paris", "Tokyo")
    assert opts.faults.webhook_loss == 0.3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"error_rate": "deploy=2"}, "error_rate.deploy"),
        ({"error_rate": "dploy=0.1"}, "error_rate: unknown endpoint 'dploy'"),
        ({"error_rate": "deploy"}, "error_rate: expected ENDPOINT=VALUE"),
        ({"webhook_loss": -0.1}, "webhook_loss"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"hold_s": -1}, "hold_s"),
        ({"frobnicate": 1}, "unknown fault 'frobnicate'"),
        ({"outages": 5}, "outages"),
    ],
)
def test_bad_fault_settings_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(FaultError, match=field.replace(".", r"\.").replace("[", r"\[")):
        Faults().updated(changes)


def test_negative_boot_time_is_refused() -> None:
    with pytest.raises(FaultError, match="--boot-s"):
        options_from_args(parse_flags("--boot-s", "-1"))


def test_error_rate_per_endpoint_and_wildcard() -> None:
    faults = Faults().updated({"error_rate": {"deploy": 1.0}})
    rng, limiter = random.Random(1), RateLimiter()
    assert decide("deploy", faults, rng, limiter, 0.0).verdict is Verdict.ERROR
    assert decide("status", faults, rng, limiter, 0.0).verdict is Verdict.PASS
    everywhere = Faults().updated({"error_rate": {"*": 1.0}})
    assert decide("status", everywhere, rng, limiter, 0.0).verdict is Verdict.ERROR


def test_error_rate_is_a_probability() -> None:
    faults, rng, limiter = Faults().updated({"error_rate": "status=0.25"}), random.Random(4), RateLimiter()
    errors = sum(decide("status", faults, rng, limiter, 0.0).verdict is Verdict.ERROR for _ in range(4000))
    assert 850 < errors < 1150  # 25 % of 4000 = 1000


def test_rate_limit_throttles_with_retry_after_and_refills() -> None:
    faults, rng, limiter = Faults().updated({"rate_limit": "deploy=2"}), random.Random(1), RateLimiter()
    verdicts = [decide("deploy", faults, rng, limiter, 100.0) for _ in range(3)]
    assert [v.verdict for v in verdicts] == [Verdict.PASS, Verdict.PASS, Verdict.THROTTLE]
    assert verdicts[2].retry_after_s == 1  # half a second to the next token, rounded up
    assert decide("deploy", faults, rng, limiter, 100.5).verdict is Verdict.PASS
    assert decide("status", faults, rng, limiter, 100.5).verdict is Verdict.PASS  # other endpoints free


def test_hold_and_latency() -> None:
    faults = Faults().updated({"hold_rate": {"deploy": 1.0}, "hold_s": 12, "latency_ms": 250})
    d = decide("deploy", faults, random.Random(1), RateLimiter(), 0.0)
    assert (d.verdict, d.hold_s, d.latency_s) == (Verdict.PASS, 12.0, 0.25)


def test_webhook_plans() -> None:
    rng = random.Random(2)
    assert plan_delivery(Faults(webhook_loss=1.0), rng, 10.0) == []
    [only] = plan_delivery(Faults(webhook_delay_s=3.0), rng, 10.0)
    assert only.at == 13.0
    original, duplicate = plan_delivery(Faults(webhook_dup=1.0), rng, 10.0)
    assert (original.copy, duplicate.copy) == (0, 1) and duplicate.at > original.at
    [held] = plan_delivery(Faults(webhook_reorder=1.0, reorder_window_s=2.0), rng, 10.0)
    assert 11.0 <= held.at <= 12.0
