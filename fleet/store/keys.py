"""Every Redis key the service uses, in one place. Only `fleet.store` modules build keys.

All keys start with the configured prefix (FLEET_REDIS_PREFIX, default `fleet`) so that several
installations or test runs can share one Redis. Names are joined with `:`; user-chosen names
(fleet, policy, app, version) are joined with the unit separator so that no name can forge another.
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "\x1f"  # never valid inside fleet, policy, app or version names


@dataclass(frozen=True)
class Keys:
    prefix: str = "fleet"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- deployments ------------------------------------------------------------------------
    def deployment(self, request_id: str) -> str:
        """Hash: one deployment's facts (see fleet.store.deployments for the fields)."""
        return self._k("dep", request_id)

    def holds(self, request_id: str) -> str:
        """Hash: session id -> "size|expiry_ms|state" (r = reservation, s = confirmed session)."""
        return self._k("holds", request_id)

    def live_deployments(self) -> str:
        """Set: request ids not known to be TERMINATED or ERROR."""
        return self._k("deps", "live")

    def policy_deployments(self, fleet: str, policy: str) -> str:
        """Set: live request ids owned by a policy (created by it or adopted for it)."""
        return self._k("deps", "policy", fleet + SEP + policy)

    def app_deployments(self, app: str, version: str) -> str:
        """Set: live request ids of one app version (placement candidates come from here)."""
        return self._k("deps", "av", app + SEP + version)

    def intent(self, intent_id: str) -> str:
        """Hash: one create intent (fleet, policy, app, version, request_id once known)."""
        return self._k("intent", intent_id)

    # --- fleets and policies -----------------------------------------------------------------
    def fleets(self) -> str:
        """Hash: fleet name -> Fleet JSON."""
        return self._k("fleets")

    def policies(self, fleet: str) -> str:
        """Hash: policy name -> Policy JSON."""
        return self._k("policies", fleet)

    def links(self, fleet: str) -> str:
        """Hash: app SEP version -> link JSON."""
        return self._k("links", fleet)

    def app_version(self, app: str, version: str) -> str:
        """String: cached session_config facts of an app version (kind, sockets, empty_ttl)."""
        return self._k("appver", app + SEP + version)

    def decisions(self, fleet: str) -> str:
        """List: the fleet's recent decisions, newest first, capped."""
        return self._k("decisions", fleet)

    def policy_state(self, fleet: str, policy: str) -> str:
        """Hash: scaler memory of a policy (last scale-up, error streak, back-off, degraded)."""
        return self._k("pstate", fleet + SEP + policy)

    # --- sessions ----------------------------------------------------------------------------
    def session(self, session_id: str) -> str:
        return self._k("session", session_id)

    def platform_session(self, platform_session_id: str) -> str:
        """String: the platform's session id -> our session id."""
        return self._k("psession", platform_session_id)

    def sessions(self) -> str:
        """Sorted set: session id by creation time."""
        return self._k("sessions")

    def waiting_sessions(self) -> str:
        """Sorted set: sessions waiting for capacity, by deadline."""
        return self._k("sessions", "waiting")

    def telemetry(self, retrieval_key: str) -> str:
        return self._k("telemetry", retrieval_key)

    def telemetry_cache(self, network: str) -> str:
        """Hash: request id -> rank for a player network (/24 or /48)."""
        return self._k("tcache", network)

    def geo_cache(self) -> str:
        """Hash: ip -> "lat,lon" from the platform's IP lookup."""
        return self._k("geo")

    # --- coordination ------------------------------------------------------------------------
    def events(self) -> str:
        """Stream: facts that should make the scaler look (deployment, session, capacity)."""
        return self._k("events")

    def lease(self) -> str:
        """String: "holder|token" of the scaler leader, with a TTL."""
        return self._k("scaler", "lease")

    def fence(self) -> str:
        """String: the highest fencing token ever granted (jobs with older tokens are dropped)."""
        return self._k("scaler", "fence")

    def leader_changes(self) -> str:
        return self._k("scaler", "changes")

    def rebuilt(self) -> str:
        """String: set once state was rebuilt from the platform; missing after Redis lost its data."""
        return self._k("rebuilt")

    def creates_window(self) -> str:
        """Sorted set: recent create times, for the account-wide creates-per-minute cap."""
        return self._k("account", "creates")

    # --- platform client coordination --------------------------------------------------------
    def platform_backoff(self) -> str:
        """String: epoch seconds until which no caller may call the platform (429 Retry-After)."""
        return self._k("platform", "backoff")

    def rate_bucket(self, endpoint: str) -> str:
        return self._k("platform", "bucket", endpoint)

    def circuit(self, endpoint: str) -> str:
        return self._k("platform", "circuit", endpoint)

    # --- allocator: placement caches, waiting demand, claims (owned by allocator/) -------------
    def telemetry_ranks(self, network: str) -> str:
        """Hash: at, partial, order (JSON request ids, best first): a player network's telemetry."""
        return self._k("alloc", "tranks", network)

    def telemetry_warming(self, network: str) -> str:
        """String with a TTL: a telemetry request for this network is in flight (single flight)."""
        return self._k("alloc", "twarm", network)

    def geo_point(self, network: str) -> str:
        """String: JSON {"lat", "lon", "country", "continent"} of a player network ({} = unknown)."""
        return self._k("alloc", "geo", network)

    def waiting_demand(self) -> str:
        """Hash: app SEP version -> sockets of the sessions waiting for capacity."""
        return self._k("alloc", "demand")

    def session_ask(self, session_id: str) -> str:
        """String: a session's location constraints (city, filters, centroid) while it waits."""
        return self._k("alloc", "ask", session_id)

    def session_notice(self, session_id: str, state: str) -> str:
        """String with a TTL: the client was told (webhook_url) that the session reached `state`."""
        return self._k("alloc", "notice", session_id, state)

    def session_claim(self, session_id: str) -> str:
        """String with a TTL: the process currently linking, resizing or deleting a session."""
        return self._k("alloc", "claim", session_id)

    # --- autoscaler: creates in flight, stops, retiring deployments (owned by autoscaler/) -----
    def pending_intents(self, fleet: str, policy: str) -> str:
        """Sorted set: create intents of a policy whose deployment is not known yet, by time asked.
        Each intent's details are in `intent(id)`; they count as pending capacity until resolved."""
        return self._k("scaler", "pending", fleet + SEP + policy)

    def stops(self) -> str:
        """Hash: request id -> epoch seconds of the last stop job enqueued for it."""
        return self._k("scaler", "stops")

    def retiring(self) -> str:
        """Hash: request id -> JSON {fleet, policy, at}: stop as soon as it is empty (delete with
        stop_deployments=true); never stopped while it has players."""
        return self._k("scaler", "retiring")

    # --- webhooks: telemetry wake-ups, early session callbacks (owned by webhooks/) ---------
    def telemetry_wake(self) -> str:
        """Pub/sub channel (not a key): a retrieval key whose telemetry result was just stored."""
        return self._k("chan", "telemetry")

    def platform_session_pending(self, platform_session_id: str) -> str:
        """Set with a TTL: session callbacks (JSON) that came before the platform's session id was
        mapped to ours; applied by `SessionStore.link_platform_id`."""
        return self._k("psession-pending", platform_session_id)

    # --- RQ ----------------------------------------------------------------------------------
    def queue_name(self) -> str:
        """RQ queue name (RQ builds its own keys from it)."""
        return f"{self.prefix}-platform"
