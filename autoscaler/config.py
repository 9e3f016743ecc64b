"""Declarative configuration: a YAML file of fleets, app-version links and policies.

    fleets:
      - name: demo               # the seed's fleet fields
        enabled: true
        dry_run: false           # optional: decide and log, never create or stop
        apps:                    # app versions linked to the fleet
          - {app: demo-game, version: v1}
        policies:                # the seed's policy fields plus optional tuning
          - name: europe
            enabled: true
            type: Location
            minimum: 1
            maximum: 6
            threshold: 0.8
            data: {filters: [{field: continent, values: [Europe], filter_type: any}]}
            idle_s: 120          # optional tuning, README "autoscaler"
            cooldown_s: 60
            hysteresis: 0.1

`fleet apply FILE` validates the whole file first (every error, with its place) and applies
nothing if anything is wrong. Fleets, policies and links in the file are created or updated
(creation times kept); with `--prune`, fleets, policies and links missing from the file are
removed. Nothing here ever stops a deployment. The scaler re-applies the file named by
FLEET_CONFIG after Redis lost its data, before it rebuilds state from the platform.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoscaler.payloads import FieldErrors, Name, parse_fleet_create, parse_policy_create
from autoscaler.reconcile import FACTS_TTL_S, facts_of
from codema.errors import NotFound, PlatformError, PlatformUnavailable
from fleet.bootstrap import Services
from fleet.models import Fleet, Policy


class ConfigError(Exception):
    """The file is invalid; nothing was applied. `problems` lists each one with its place."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid fleet config:\n  " + "\n  ".join(problems))
        self.problems = problems


class LinkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: Name
    version: Name


class FleetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Any = None
    enabled: Any = False
    dry_run: Any = False
    apps: list[LinkSpec] = Field(default_factory=list)
    policies: list[dict[str, Any]] = Field(default_factory=list)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fleets: list[FleetFile] = Field(default_factory=list)


class Parsed:
    def __init__(self) -> None:
        self.fleets: list[tuple[Fleet, list[Policy], list[LinkSpec]]] = []


def _place(loc: tuple[int | str, ...]) -> str:
    """("fleets", 0, "apps", 1, "version") -> "fleets[0].apps[1].version"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def parse_config(data: Any) -> Parsed:
    """Validate everything; raise ConfigError listing every problem."""
    problems: list[str] = []
    try:
        doc = ConfigFile.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError([f"{_place(e['loc'])}: {e['msg']}" for e in err.errors()]) from err
    parsed = Parsed()
    seen_fleets: set[str] = set()
    for i, f in enumerate(doc.fleets):
        where = f"fleets[{i}]"
        try:
            given = f.model_dump(include={"name", "enabled", "dry_run"}, exclude_unset=True)
            fleet_payload = parse_fleet_create(given)
        except FieldErrors as err:
            problems.extend(f"{where}.{e['field']}: {e['error']}" for e in err.errors)
            continue
        if fleet_payload.name in seen_fleets:
            problems.append(f"{where}.name: fleet '{fleet_payload.name}' appears twice")
        seen_fleets.add(fleet_payload.name)
        policies: list[Policy] = []
        for j, raw in enumerate(f.policies):
            try:
                policy = parse_policy_create(raw)
            except FieldErrors as err:
                problems.extend(f"{where}.policies[{j}].{e['field']}: {e['error']}" for e in err.errors)
                continue
            if any(p.name == policy.name for p in policies):
                problems.append(f"{where}.policies[{j}].name: policy '{policy.name}' appears twice")
            policies.append(policy)
        fleet = Fleet(name=fleet_payload.name, enabled=fleet_payload.enabled, dry_run=fleet_payload.dry_run)
        parsed.fleets.append((fleet, policies, f.apps))
    if problems:
        raise ConfigError(problems)
    return parsed


def load_file(path: Path) -> Parsed:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError([f"{path}: {err}"]) from err
    return parse_config(data)


async def _check_links(services: Services, parsed: Parsed) -> list[str]:
    """Each linked version must exist and be session-based. An unreachable platform does not block
    applying (the scaler reads the facts later); a definite answer does."""
    problems = []
    for fleet, _, links in parsed.fleets:
        for link in links:
            try:
                av = await services.client.get_app_version(link.app, link.version)
            except NotFound:
                problems.append(
                    f"fleet '{fleet.name}': app version {link.app}/{link.version} not found on the platform"
                )
                continue
            except PlatformUnavailable:
                continue
            except PlatformError as err:
                problems.append(f"fleet '{fleet.name}': app version {link.app}/{link.version}: {err}")
                continue
            if av.session_config.kind not in ("Seat", "Match"):
                problems.append(
                    f"fleet '{fleet.name}': app version {link.app}/{link.version} is not session-based "
                    "(session_config.kind must be Seat or Match)"
                )
                continue
            facts = facts_of(link.app, link.version, av.session_config)
            await services.store.fleets.put_app_version(facts, ttl_s=FACTS_TTL_S)
    return problems


async def apply_config(services: Services, parsed: Parsed, *, prune: bool = False) -> str:
    problems = await _check_links(services, parsed)
    if problems:
        raise ConfigError(problems)
    store = services.store.fleets
    now = dt.datetime.fromtimestamp(services.clock(), dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    counts = {"fleets": 0, "policies": 0, "links": 0, "removed": 0}
    for fleet, policies, links in parsed.fleets:
        old = await store.get_fleet(fleet.name)
        await store.put_fleet(
            fleet.model_copy(update={"create_time": old.create_time if old else now, "last_updated": now})
        )
        counts["fleets"] += 1
        existing = {p.name: p for p in await store.list_policies(fleet.name)}
        for policy in policies:
            before = existing.get(policy.name)
            created = before.create_time if before and before.create_time else now
            await store.put_policy(
                fleet.name, policy.model_copy(update={"create_time": created, "last_updated": now})
            )
            counts["policies"] += 1
        wanted_links = {(ln.app, ln.version) for ln in links}
        for app, version in sorted(wanted_links):
            link = await store.get_link(fleet.name, app, version) or {}
            doc = {
                "app": app,
                "app_version": version,
                "fleet": fleet.name,
                "create_time": link.get("create_time", now),
                "last_updated": now,
            }
            await store.link(fleet.name, app, version, doc)
            counts["links"] += 1
        if prune:
            for name in set(existing) - {p.name for p in policies}:
                counts["removed"] += await store.delete_policy(fleet.name, name)
            for ref in await store.links(fleet.name):
                if (ref.app, ref.version) not in wanted_links:
                    counts["removed"] += await store.unlink(fleet.name, ref.app, ref.version)
    if prune:
        keep = {f.name for f, _, _ in parsed.fleets}
        for f in await store.list_fleets():
            if f.name not in keep:
                counts["removed"] += await store.delete_fleet(f.name)
    await services.store.coord.publish("fleet", fleet="*")
    return f"applied: {counts['fleets']} fleets, {counts['policies']} policies, {counts['links']} links" + (
        f"; removed {counts['removed']}" if prune else ""
    )


async def apply_file(services: Services, path: Path, *, prune: bool = False) -> str:
    """`fleet apply FILE`: validate the whole file, then apply it (see the module docstring)."""
    return await apply_config(services, load_file(path), prune=prune)
