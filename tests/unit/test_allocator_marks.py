"""Our session id in the callback URL handed to the platform (allocator.marks): written beside the
token, read back only from URLs that point at our own session callback."""

from __future__ import annotations

import pytest

from allocator.marks import SESSION_ID, marked_url, session_id_in
from allocator.service import new_session_id
from fleet.callbacks import callback_url
from fleet.settings import Settings
from webhooks.auth import token_of

BASE = "https://fleet.example.com/webhooks/sessions?token=s3cr%2Bt"
SID = "0123456789abcdef-s"


def test_marked_url_keeps_the_token_and_adds_our_id() -> None:
    url = marked_url(BASE, SID)
    assert url == f"{BASE}&sid={SID}"
    query = url.split("?", 1)[1].encode()
    assert token_of(query) == "s3cr+t"  # the webhook route still finds its secret
    assert session_id_in(url, BASE) == SID


def test_without_a_secret_the_id_is_the_only_parameter() -> None:
    base = callback_url(Settings(public_url="http://127.0.0.1:8000", webhook_secret=""), "sessions")
    assert marked_url(base, SID) == f"http://127.0.0.1:8000/webhooks/sessions?sid={SID}"
    assert session_id_in(marked_url(base, SID), base) == SID


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "no callback URL"),
        ("https://fleet.example.com/webhooks/sessions?token=x", "no id"),
        (f"https://other.example.com/webhooks/sessions?token=x&sid={SID}", "another host"),
        (f"http://fleet.example.com/webhooks/sessions?sid={SID}", "another scheme"),
        (f"https://fleet.example.com/webhooks/deployments?sid={SID}", "another callback"),
        ("https://fleet.example.com/webhooks/sessions?sid=../../etc", "not an id we make"),
        ("https://fleet.example.com/webhooks/sessions?sid=fleet:session:x", "not an id we make"),
        (f"https://fleet.example.com/webhooks/sessions?sid={SID}&sid=0123456789abcdee-s", "two ids"),
        ("http://[::1/webhooks/sessions?sid=0123456789abcdef-s", "not a URL"),
    ],
)
def test_only_our_own_callback_with_one_well_formed_id_counts(url: str, why: str) -> None:
    assert session_id_in(url, BASE) == "", why


def test_the_url_may_come_back_normalised() -> None:
    assert session_id_in(f"HTTPS://Fleet.Example.com/webhooks/sessions/?sid={SID}&token=y", BASE) == SID


def test_new_session_ids_are_recognised() -> None:
    assert all(SESSION_ID.match(new_session_id()) for _ in range(100))
