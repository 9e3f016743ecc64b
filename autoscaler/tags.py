"""The tags our creates carry, so the platform's own list tells whose a deployment is.

A deployment we create is tagged with the fleet and policy names (as the platform's fleet manager
does, so existing selectors keep matching) and with prefixed tags that only we write:
`fleet:<fleet>`, `policy:<policy>`, `app:<app>`, `version:<version>` and, added by the client,
`intent:<id>`. Reconcile adopts a deployment only on the prefixed tags (plain names are
ambiguous), so a Redis that lost its data is rebuilt from the platform's list alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from codema.schemas import INTENT_TAG_PREFIX

FLEET, POLICY, APP, VERSION = "fleet:", "policy:", "app:", "version:"


@dataclass(frozen=True)
class Owner:
    fleet: str
    policy: str
    app: str = ""
    version: str = ""
    intent: str = ""


def create_tags(fleet: str, policy: str, app: str, version: str) -> list[str]:
    tags = [fleet, policy, FLEET + fleet, POLICY + policy, APP + app, VERSION + version]
    return list(dict.fromkeys(tags))


def owner_of(tags: Iterable[str] | None) -> Owner | None:
    """Who created a deployment, from its tags; None unless both fleet and policy are tagged."""
    found: dict[str, str] = {}
    for tag in tags or ():
        for prefix in (FLEET, POLICY, APP, VERSION, INTENT_TAG_PREFIX):
            if tag.startswith(prefix) and prefix not in found:
                found[prefix] = tag[len(prefix) :]
    if not found.get(FLEET) or not found.get(POLICY):
        return None
    return Owner(
        fleet=found[FLEET],
        policy=found[POLICY],
        app=found.get(APP, ""),
        version=found.get(VERSION, ""),
        intent=found.get(INTENT_TAG_PREFIX, ""),
    )
