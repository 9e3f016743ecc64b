"""Sessions: linking to deployments, socket accounting, users, webhooks.

Sockets: a Seat session takes one socket per player, a Match session one per session. A session is
linked at once when a READY deployment with room fits (the one named by `deployment_request_id`,
else the best by estimated latency among those matching selectors and filters); otherwise, with
the version's `autodeploy`, it waits for a new deployment; otherwise it is Unprocessable.
Session webhooks fire when a session becomes linked, unprocessable or error.
"""

from __future__ import annotations

from codema.sim.deployments import DeploymentsPart
from codema.sim.placement import check_filters, matches_filters, rank_deployments, selectors_match
from codema.sim.records import (
    BadRequest,
    DeploymentRecord,
    Gone,
    Kind,
    LocationFilter,
    NotFound,
    SessionRecord,
    SessionSpec,
    SessionStatus,
    SessionUser,
    Status,
    Unprocessable,
    VersionRecord,
)
from codema.sim.views import session_get
from codema.sim.views import status as status_view

SESSION_BULK_FIELDS = ("session_id", "deployment_tags", "request_id")


class SessionsPart(DeploymentsPart):
    def status_body(self, d: DeploymentRecord) -> dict[str, object]:
        return status_view(d, self.now, [self.sessions[s] for s in d.session_ids if s in self.sessions])

    def session_body(self, s: SessionRecord) -> dict[str, object]:
        return session_get(s, self.now, self.deployments.get(s.deployment_id or ""))

    # -- create -----------------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec) -> SessionRecord:
        """`POST /v1/session`. Linking is decided before this returns; read the status on the record."""
        self.advance()
        version = self.resolve_version(spec.app_name, spec.version_name)
        if version.kind is Kind.DEFAULT:
            raise BadRequest(
                f"version_name: {version.app} {version.name} is not session-based (kind Default)"
            )
        check_filters(spec.filters, "filters", strict_fields=False)
        sid = f"{self.new_hex(12)}-s"
        s = SessionRecord(
            session_id=sid,
            custom_id=spec.custom_id,
            app=version.app,
            version=version.name,
            version_number=version.number,
            kind=version.kind,
            users=self.users_of(spec.ip_list, spec.geo_ip_list, "ip_list"),
            created=self.now,
            webhook_url=spec.webhook_url,
            selectors=spec.selectors,
        )
        self.sessions[sid] = s
        if spec.deployment_request_id:
            self._link_to(s, spec.deployment_request_id)
        else:
            self._link_best(s, spec, version)
        return s

    def _link_to(self, s: SessionRecord, request_id: str) -> None:
        d = self.deployments.get(request_id)
        if d is None or (d.app, d.version) != (s.app, s.version):
            self._refuse(
                s, SessionStatus.UNPROCESSABLE, f"deployment {request_id} not found for this app version"
            )
        elif not d.accepts_sessions():
            self._refuse(s, SessionStatus.UNPROCESSABLE, f"deployment {request_id} is not accepting sessions")
        elif d.free < s.size:
            self._refuse(s, SessionStatus.UNPROCESSABLE, f"deployment {request_id} has {d.free} free sockets")
        else:
            self._link(s, d)

    def _link_best(self, s: SessionRecord, spec: SessionSpec, version: VersionRecord) -> None:
        filters = spec.filters
        players = [spec.location] if spec.location else self.points_of(s.users)
        fits = [
            d for d in self.live.values()
            if (d.app, d.version) == (s.app, s.version) and d.accepts_sessions() and d.free >= s.size
            and selectors_match(d, spec.selectors) and matches_filters(d.location, filters)
        ]  # fmt: skip
        if fits:
            self._link(s, rank_deployments(fits, players)[0])
            return
        if not version.autodeploy:
            self._refuse(s, SessionStatus.UNPROCESSABLE, "no ready deployment with free sockets matches")
            return
        try:
            loc = self.place(filters, players)
        except Unprocessable as err:
            self._refuse(s, SessionStatus.UNPROCESSABLE, err.message)
            return
        tags = [sel.tag for sel in spec.selectors]
        d = self.start_deployment(version, loc, tags, None, len(s.users))
        s.status, s.deployment_id = SessionStatus.WAITING, d.request_id

    def _link(self, s: SessionRecord, d: DeploymentRecord) -> None:
        s.status, s.deployment_id, s.error = SessionStatus.READY, d.request_id, None
        d.session_ids.append(s.session_id)
        d.used += s.size
        d.empty_since = None
        self.emit("session", s.webhook_url, self.session_body(s), s.session_id)

    def _refuse(self, s: SessionRecord, status: SessionStatus, reason: str) -> None:
        s.status, s.error, s.deployment_id = status, reason, None
        self.emit("session", s.webhook_url, self.session_body(s), s.session_id)

    # -- hooks from the deployment lifecycle ------------------------------------------------------

    def _waiting_for(self, d: DeploymentRecord) -> list[SessionRecord]:
        return [
            s for s in self.sessions.values()
            if s.status is SessionStatus.WAITING and s.deployment_id == d.request_id
        ]  # fmt: skip

    def _sessions_on_ready(self, d: DeploymentRecord) -> None:
        for s in self._waiting_for(d):
            if d.free >= s.size and d.stop_requested is None:
                self._link(s, d)
            else:
                self._refuse(s, SessionStatus.UNPROCESSABLE, f"deployment {d.request_id} has no room")

    def _sessions_on_end(self, d: DeploymentRecord) -> None:
        for s in self._waiting_for(d):
            self._refuse(s, SessionStatus.ERROR, f"deployment {d.request_id} failed: {d.error_detail}")
        for sid in d.session_ids:
            self.sessions.pop(sid, None)
            self.gone_sessions.add(sid)
        d.session_ids.clear()
        d.used = 0

    # -- read, delete, users ----------------------------------------------------------------------

    def session(self, session_id: str) -> SessionRecord:
        self.advance()
        s = self.sessions.get(session_id)
        if s is None:
            if session_id in self.gone_sessions:
                raise NotFound(f"session {session_id} was deleted")
            raise NotFound(f"session {session_id} not found")
        return s

    def delete_session(self, session_id: str) -> SessionRecord:
        """`DELETE /v1/session/{id}`: frees its sockets; the deployment stays. Gone when already deleted."""
        self.advance()
        if session_id in self.gone_sessions:
            raise Gone(f"session {session_id} already terminated")
        s = self.session(session_id)
        self._unlink(s)
        del self.sessions[session_id]
        self.gone_sessions.add(session_id)
        return s

    def _unlink(self, s: SessionRecord) -> None:
        d = self.deployments.get(s.deployment_id or "")
        if d is None or not s.linked or s.session_id not in d.session_ids:
            return
        d.session_ids.remove(s.session_id)
        d.used = max(0, d.used - s.size)
        if not d.session_ids and d.status is Status.READY:
            self.mark_empty(d)

    def add_users(self, session_id: str, ips: list[str]) -> SessionRecord:
        """`PUT /v1/session/{id}/users`: Unprocessable when a Seat deployment lacks the sockets."""
        s = self.session(session_id)
        known = {u.ip for u in s.users}
        new: list[SessionUser] = []
        for u in self.users_of(ips, (), "ip_list"):
            if u.ip not in known:
                known.add(u.ip)
                new.append(u)
        d = self.deployments.get(s.deployment_id or "")
        if s.linked and s.kind is Kind.SEAT and d is not None:
            if d.free < len(new):
                raise Unprocessable(
                    f"ip_list: deployment {d.request_id} has {d.free} free sockets, {len(new)} needed"
                )
            d.used += len(new)
        s.users.extend(new)
        return s

    def remove_users(self, session_id: str, ips: list[str]) -> SessionRecord:
        """`DELETE /v1/session/{id}/users`: a Seat session frees one socket per removed player."""
        s = self.session(session_id)
        self.users_of(ips, (), "ip_list")  # validates
        gone = set(ips)
        kept = [u for u in s.users if u.ip not in gone]
        removed = len(s.users) - len(kept)
        d = self.deployments.get(s.deployment_id or "")
        if s.linked and s.kind is Kind.SEAT and d is not None:
            d.used = max(0, d.used - removed)
        s.users = kept
        return s

    def list_sessions(self) -> list[SessionRecord]:
        self.advance()
        return sorted(self.sessions.values(), key=lambda s: (s.created, s.session_id))

    def bulk_stop_sessions(self, filters: list[LocationFilter]) -> list[str]:
        """`POST /v1/sessions/bulk-stop`: delete every session matching all filters."""
        for i, f in enumerate(filters):
            if f.field not in SESSION_BULK_FIELDS:
                raise BadRequest(f"filters[{i}].field: expected one of {', '.join(SESSION_BULK_FIELDS)}")
            if f.filter_type not in ("any", "all", "not"):
                raise BadRequest(f"filters[{i}].filter_type: expected one of any, all, not")
        chosen = [
            s.session_id for s in self.list_sessions() if all(self._session_match(s, f) for f in filters)
        ]
        for sid in chosen:
            self.delete_session(sid)
        return chosen

    def _session_match(self, s: SessionRecord, f: LocationFilter) -> bool:
        d = self.deployments.get(s.deployment_id or "")
        if f.field == "session_id":
            have = {s.session_id}
        elif f.field == "request_id":
            have = {d.request_id} if d else set()
        else:
            have = set(d.tags) if d else set()
        wanted = set(f.values)
        if f.filter_type == "all":
            return wanted <= have
        if f.filter_type == "not":
            return not (wanted & have)
        return bool(wanted & have)
