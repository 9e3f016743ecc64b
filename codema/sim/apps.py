"""Applications and app versions of the simulated platform (`/v1/app...`)."""

from __future__ import annotations

from typing import Any

from codema.sim.records import AppRecord, BadRequest, Conflict, Kind, NotFound, VersionRecord
from codema.sim.state import WorldState

KINDS = tuple(k.value for k in Kind)


def check_session_config(cfg: object, partial: bool) -> None:
    """The parts of `session_config` the simulator acts on; BadRequest names the field."""
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise BadRequest("session_config: expected an object")
    if ("kind" in cfg or not partial) and cfg.get("kind") not in KINDS:
        raise BadRequest(f"session_config.kind: expected one of {', '.join(KINDS)}")
    if "sockets" in cfg or not partial:
        sockets = cfg.get("sockets")
        if not isinstance(sockets, int) or isinstance(sockets, bool) or sockets < 1:
            raise BadRequest("session_config.sockets: expected an integer >= 1")
    for name, low in (("empty_ttl", 1), ("session_max_duration", 60)):
        value = cfg.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise BadRequest(f"session_config.{name}: expected an integer >= {low}")


class AppsPart(WorldState):
    def create_app(
        self, name: str, is_active: bool = True, image: str = "", is_telemetry_agent_active: bool = False
    ) -> AppRecord:
        self.advance()
        if not name:
            raise BadRequest("name: required")
        if name in self.apps:
            # The spec gives app create no 409 (versions have one): a duplicate is a 400.
            raise BadRequest(f"name: application {name} already exists")
        app = AppRecord(name, is_active, is_telemetry_agent_active, image, self.now, self.now)
        self.apps[name] = app
        return app

    def app(self, name: str) -> AppRecord:
        self.advance()
        found = self.apps.get(name)
        if found is None:
            raise NotFound(f"application {name} not found")
        return found

    def update_app(self, name: str, changes: dict[str, Any]) -> AppRecord:
        app = self.app(name)
        new_name = changes.get("name") or name
        if new_name != name:
            if new_name in self.apps:
                raise Conflict(f"application {new_name} already exists")
            self.apps[new_name] = self.apps.pop(name)
            for key in [k for k in self.versions if k[0] == name]:
                v = self.versions.pop(key)
                v.app = new_name
                self.versions[(new_name, v.name)] = v
            app.name = new_name
        for field in ("is_active", "is_telemetry_agent_active", "image"):
            if field in changes:
                setattr(app, field, changes[field])
        app.updated = self.now
        return app

    def delete_app(self, name: str) -> None:
        self.app(name)
        del self.apps[name]
        for key in [k for k in self.versions if k[0] == name]:
            del self.versions[key]

    def list_apps(self) -> list[AppRecord]:
        self.advance()
        return sorted(self.apps.values(), key=lambda a: (a.created, a.name))

    def create_version(self, app_name: str, payload: dict[str, Any]) -> VersionRecord:
        self.app(app_name)
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("name: required")
        check_session_config(payload.get("session_config"), partial=False)
        if (app_name, name) in self.versions:
            raise Conflict(f"version {name} of {app_name} already exists")
        v = VersionRecord(app_name, name, self.next_version_number(), dict(payload), self.now, self.now)
        self.versions[(app_name, name)] = v
        return v

    def version(self, app_name: str, name: str) -> VersionRecord:
        self.app(app_name)
        found = self.versions.get((app_name, name))
        if found is None:
            raise NotFound(f"version {name} of {app_name} not found")
        return found

    def resolve_version(self, app_name: str, name: str | None) -> VersionRecord:
        """The named version, or the app's most recently created one (the platform's default)."""
        if name:
            return self.version(app_name, name)
        self.app(app_name)
        mine = [v for (a, _), v in self.versions.items() if a == app_name]
        if not mine:
            raise NotFound(f"application {app_name} has no version")
        return max(mine, key=lambda v: (v.created, v.number))

    def update_version(self, app_name: str, name: str, changes: dict[str, Any]) -> VersionRecord:
        v = self.version(app_name, name)
        check_session_config(changes.get("session_config"), partial=True)
        new_name = changes.get("name") or name
        if new_name != name and (app_name, new_name) in self.versions:
            raise Conflict(f"version {new_name} of {app_name} already exists")
        payload = {**v.payload, **{k: val for k, val in changes.items() if k != "session_config"}}
        if isinstance(changes.get("session_config"), dict):
            payload["session_config"] = {**v.session_config, **changes["session_config"]}
        check_session_config(payload.get("session_config"), partial=False)
        del self.versions[(app_name, name)]
        v.name, v.payload, v.updated = new_name, payload, self.now
        self.versions[(app_name, new_name)] = v
        return v

    def delete_version(self, app_name: str, name: str) -> None:
        self.version(app_name, name)
        del self.versions[(app_name, name)]

    def list_versions(self, app_name: str) -> list[VersionRecord]:
        self.app(app_name)
        return sorted((v for (a, _), v in self.versions.items() if a == app_name), key=lambda v: v.number)
